/* The Earley recognizer of earley.py, compiled: Earley sets as item arrays in one arena per
 * parser, built by scanning a terminal (or merging sets at one position), interned by their
 * live items, and memoized per (set, terminal).
 *
 * A set holds its kernel-derived items (origin: an earlier set) that are not finished, sorted
 * by the symbol after the dot, and a shared prediction: the items whose origin is the set
 * itself, which depend only on the nonterminals predicted. Finished items act once, while
 * their set is built (completion), and are not kept: two sets with the same unfinished items
 * and the same accepting flag continue alike, so they are one set (one id).
 *
 * Ids are int32 indices into the arena; set 0 is the initial set. Nothing is freed before the
 * parser: `earley.py` bounds the arena by starting a new parser when its automaton resets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int32_t next, rule, dot, origin; } Item;

typedef struct {
    int64_t items;     /* offset into the item pool */
    int32_t n_items;
    int32_t pred;      /* prediction id */
    int32_t accepting;
    int32_t n_expected;
    int64_t expected;  /* offset into the int pool */
} Set;

typedef struct {
    int64_t nts;       /* offset into the int pool: predicted nonterminals, sorted */
    int32_t n_nts;
    int32_t n_items;
    int64_t items;     /* offset into the item pool (origin -1: the set itself) */
    int32_t n_terms;
    int64_t terms;     /* offset into the int pool: terminals after a dot, sorted */
    uint64_t hash;
} Pred;

typedef struct { uint64_t key; int32_t value; } Slot;

typedef struct {
    Slot *slots;
    int64_t cap, used;  /* cap: a power of two */
} Table;

typedef struct {
    int32_t n_terminals, n_symbols, n_rules, start;
    int32_t *lhs, *rhs_start, *rhs_len, *rhs;
    uint8_t *nullable;
    int32_t *by_lhs_start, *by_lhs;   /* rules of each symbol (CSR) */
    int32_t *direct_start, *direct;   /* nonterminals predicted directly with each (CSR) */
    int32_t *closure_off, *closure_len; /* per symbol, computed on first use (-1: not yet) */

    Item *ipool; int64_t ipool_n, ipool_cap;
    int32_t *zpool; int64_t zpool_n, zpool_cap;
    Set *sets; int32_t n_sets, sets_cap;
    Pred *preds; int32_t n_preds, preds_cap;
    Table scans;   /* (set, terminal) -> set */
    Table interned; /* hash of live items -> first set with it (chained through `chain`) */
    Table pred_of;  /* hash of nonterminals -> first prediction (chained through `pchain`) */
    int32_t *chain; int32_t chain_cap;
    int32_t *pchain; int32_t pchain_cap;

    /* scratch, reused by every construction */
    uint32_t *stamp; uint32_t generation;     /* per symbol: predicted in this construction */
    Item *agenda; int64_t agenda_cap;
    Item *found; int64_t found_n, found_cap;  /* every item of the construction (dedup) */
    int64_t *seen; int64_t seen_cap;          /* open addressing over `found`, -1 empty */
    int32_t *nts; int64_t nts_n, nts_cap;
    int32_t *terms; int64_t terms_cap;
    uint32_t *tstamp;                         /* per symbol: terminal listed already */
    uint32_t *cstamp; uint32_t cgeneration;   /* per symbol: reached by a closure walk */
    int32_t *cl; int64_t cl_cap;              /* a closure walk's nonterminals */
} Parser;

static int grow(void **p, int64_t *cap, int64_t need, size_t size) {
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int grow32(void **p, int32_t *cap, int64_t need, size_t size) {
    int64_t c = *cap;
    if (grow(p, &c, need, size)) return -1;
    *cap = (int32_t)c;
    return 0;
}

static uint64_t mix(uint64_t h, uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static int table_init(Table *t, int64_t cap) {
    t->slots = (Slot *)malloc((size_t)cap * sizeof(Slot));
    if (!t->slots) return -1;
    for (int64_t i = 0; i < cap; i++) t->slots[i].value = -1;
    t->cap = cap;
    t->used = 0;
    return 0;
}

/* The value stored under `key`, or -1. */
static int32_t table_get(const Table *t, uint64_t key) {
    uint64_t m = (uint64_t)t->cap - 1, i = mix(0, key) & m;
    while (t->slots[i].value >= 0) {
        if (t->slots[i].key == key) return t->slots[i].value;
        i = (i + 1) & m;
    }
    return -1;
}

static int table_put(Table *t, uint64_t key, int32_t value) {
    if (2 * (t->used + 1) > t->cap) {
        Table bigger;
        if (table_init(&bigger, 2 * t->cap)) return -1;
        for (int64_t i = 0; i < t->cap; i++)
            if (t->slots[i].value >= 0) table_put(&bigger, t->slots[i].key, t->slots[i].value);
        free(t->slots);
        *t = bigger;
    }
    uint64_t m = (uint64_t)t->cap - 1, i = mix(0, key) & m;
    while (t->slots[i].value >= 0) {
        if (t->slots[i].key == key) { t->slots[i].value = value; return 0; }
        i = (i + 1) & m;
    }
    t->slots[i].key = key;
    t->slots[i].value = value;
    t->used++;
    return 0;
}

/* Record `id` under hash h in a table of chained records (`chain[id]`: the record before it
 * under the same hash). */
static int remember(Table *t, int32_t *chain, uint64_t h, int32_t id) {
    chain[id] = table_get(t, h);
    return table_put(t, h, id);
}

static int32_t next_symbol(const Parser *P, int32_t rule, int32_t dot) {
    return dot < P->rhs_len[rule] ? P->rhs[P->rhs_start[rule] + dot] : -1;
}

static int item_cmp(const void *a, const void *b) {
    const Item *x = (const Item *)a, *y = (const Item *)b;
    if (x->next != y->next) return x->next < y->next ? -1 : 1;
    if (x->rule != y->rule) return x->rule < y->rule ? -1 : 1;
    if (x->dot != y->dot) return x->dot < y->dot ? -1 : 1;
    if (x->origin != y->origin) return x->origin < y->origin ? -1 : 1;
    return 0;
}

static int int_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Nonterminals predicted with `nt` (itself included): its offset in the int pool, computed
 * on first use by a walk of the direct predictions. */
static int closure_of(Parser *P, int32_t nt, int64_t *off, int32_t *len) {
    if (P->closure_off[nt] < 0) {
        uint32_t g = ++P->cgeneration;
        int64_t n = 0;
        if (grow((void **)&P->cl, &P->cl_cap, 1, sizeof(int32_t))) return -1;
        P->cl[n++] = nt;
        P->cstamp[nt] = g;
        for (int64_t i = 0; i < n; i++) {
            int32_t s = P->cl[i];
            for (int32_t j = P->direct_start[s]; j < P->direct_start[s + 1]; j++) {
                int32_t x = P->direct[j];
                if (P->cstamp[x] != g) {
                    P->cstamp[x] = g;
                    if (grow((void **)&P->cl, &P->cl_cap, n + 1, sizeof(int32_t))) return -1;
                    P->cl[n++] = x;
                }
            }
        }
        if (grow((void **)&P->zpool, &P->zpool_cap, P->zpool_n + n, sizeof(int32_t))) return -1;
        memcpy(P->zpool + P->zpool_n, P->cl, (size_t)n * sizeof(int32_t));
        P->closure_off[nt] = (int32_t)P->zpool_n;  /* (the pool stays below 2^31 ints here) */
        P->closure_len[nt] = (int32_t)n;
        P->zpool_n += n;
    }
    *off = P->closure_off[nt];
    *len = P->closure_len[nt];
    return 0;
}

/* The prediction for the sorted nonterminals nts[0..n): interned by their hash. */
static int32_t prediction(Parser *P, const int32_t *nts, int64_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (int64_t i = 0; i < n; i++) h = mix(h, (uint64_t)nts[i]);
    for (int32_t p = table_get(&P->pred_of, h); p >= 0; p = P->pchain[p]) {
        Pred *q = &P->preds[p];
        if (q->hash == h && q->n_nts == n &&
            !memcmp(P->zpool + q->nts, nts, (size_t)n * sizeof(int32_t)))
            return p;
    }
    if (grow32((void **)&P->preds, &P->preds_cap, P->n_preds + 1, sizeof(Pred))) return -2;
    if (grow32((void **)&P->pchain, &P->pchain_cap, P->n_preds + 1, sizeof(int32_t))) return -2;
    int32_t id = P->n_preds;
    Pred q;
    q.hash = h;
    q.n_nts = (int32_t)n;
    if (grow((void **)&P->zpool, &P->zpool_cap, P->zpool_n + n, sizeof(int32_t))) return -2;
    q.nts = P->zpool_n;
    memcpy(P->zpool + P->zpool_n, nts, (size_t)n * sizeof(int32_t));
    P->zpool_n += n;
    /* items: every rule of a predicted nonterminal, dot 0 and past each nullable symbol */
    q.items = P->ipool_n;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t a = P->zpool[q.nts + i];
        for (int32_t j = P->by_lhs_start[a]; j < P->by_lhs_start[a + 1]; j++) {
            int32_t r = P->by_lhs[j];
            for (int32_t d = 0; d < P->rhs_len[r]; d++) {
                int32_t s = P->rhs[P->rhs_start[r] + d];
                if (grow((void **)&P->ipool, &P->ipool_cap, P->ipool_n + m + 1, sizeof(Item)))
                    return -2;
                Item it = {s, r, d, -1};
                P->ipool[P->ipool_n + m++] = it;
                if (s < P->n_terminals || !P->nullable[s]) break;
            }
        }
    }
    qsort(P->ipool + q.items, (size_t)m, sizeof(Item), item_cmp);
    q.n_items = (int32_t)m;
    P->ipool_n += m;
    int64_t t = 0;
    if (grow((void **)&P->zpool, &P->zpool_cap, P->zpool_n + m, sizeof(int32_t))) return -2;
    for (int64_t i = 0; i < m; i++) {
        int32_t s = P->ipool[q.items + i].next;
        if (s < P->n_terminals && (t == 0 || P->zpool[P->zpool_n + t - 1] != s))
            P->zpool[P->zpool_n + t++] = s;  /* sorted by next: terminals come in order */
    }
    q.terms = P->zpool_n;
    q.n_terms = (int32_t)t;
    P->zpool_n += t;
    P->preds[id] = q;
    if (remember(&P->pred_of, P->pchain, h, id)) return -2;
    P->n_preds++;
    return id;
}

/* Index range [lo, hi) of the items of a sorted array whose next symbol is `sym`. */
static void range_of(const Item *items, int32_t n, int32_t sym, int32_t *lo, int32_t *hi) {
    int32_t a = 0, b = n;
    while (a < b) {
        int32_t m = (a + b) / 2;
        if (items[m].next < sym) a = m + 1; else b = m;
    }
    *lo = a;
    b = n;
    while (a < b) {
        int32_t m = (a + b) / 2;
        if (items[m].next <= sym) a = m + 1; else b = m;
    }
    *hi = a;
}

static int push(Parser *P, int64_t *n, int32_t rule, int32_t dot, int32_t origin) {
    if (grow((void **)&P->agenda, &P->agenda_cap, *n + 1, sizeof(Item))) return -1;
    Item it = {next_symbol(P, rule, dot), rule, dot, origin};
    P->agenda[(*n)++] = it;
    return 0;
}

/* Whether the item is new to this construction (and record it). */
static int fresh(Parser *P, const Item *it) {
    if (2 * (P->found_n + 1) > P->seen_cap) {
        int64_t cap = P->seen_cap ? 2 * P->seen_cap : 1024;
        int64_t *s = (int64_t *)realloc(P->seen, (size_t)cap * sizeof(int64_t));
        if (!s) return -1;
        P->seen = s;
        P->seen_cap = cap;
        for (int64_t i = 0; i < cap; i++) s[i] = -1;
        for (int64_t k = 0; k < P->found_n; k++) {
            const Item *x = &P->found[k];
            uint64_t i = mix(mix((uint64_t)x->rule, (uint64_t)x->dot), (uint64_t)x->origin) & (cap - 1);
            while (s[i] >= 0) i = (i + 1) & (cap - 1);
            s[i] = k;
        }
    }
    uint64_t m = (uint64_t)P->seen_cap - 1;
    uint64_t i = mix(mix((uint64_t)it->rule, (uint64_t)it->dot), (uint64_t)it->origin) & m;
    while (P->seen[i] >= 0) {
        const Item *x = &P->found[P->seen[i]];
        if (x->rule == it->rule && x->dot == it->dot && x->origin == it->origin) return 0;
        i = (i + 1) & m;
    }
    if (grow((void **)&P->found, &P->found_cap, P->found_n + 1, sizeof(Item))) return -1;
    P->seen[i] = P->found_n;
    P->found[P->found_n++] = *it;
    return 1;
}

/* The set closing the kernel in P->agenda[0..n) (origins: earlier sets), interned;
 * `accepting`: whether it accepts already (a union of sets one of which does). */
static int32_t build(Parser *P, int64_t n, int accepting) {
    uint32_t g = ++P->generation;
    int64_t n_nts = 0;
    for (int64_t i = 0; i < P->found_n; i++) {  /* clear the last construction's dedup */
        const Item *x = &P->found[i];
        uint64_t m = (uint64_t)P->seen_cap - 1;
        uint64_t j = mix(mix((uint64_t)x->rule, (uint64_t)x->dot), (uint64_t)x->origin) & m;
        while (P->seen[j] != i) j = (j + 1) & m;
        P->seen[j] = -1;
    }
    P->found_n = 0;
    while (n > 0) {
        Item it = P->agenda[--n];
        int f = fresh(P, &it);
        if (f < 0) return -2;
        if (!f) continue;
        if (it.next >= P->n_terminals) {
            if (P->stamp[it.next] != g) {
                int64_t off;
                int32_t len;
                if (closure_of(P, it.next, &off, &len)) return -2;
                if (grow((void **)&P->nts, &P->nts_cap, n_nts + len, sizeof(int32_t))) return -2;
                for (int32_t k = 0; k < len; k++) {
                    int32_t x = P->zpool[off + k];
                    if (P->stamp[x] != g) {
                        P->stamp[x] = g;
                        P->nts[n_nts++] = x;
                    }
                }
            }
            if (P->nullable[it.next] && push(P, &n, it.rule, it.dot + 1, it.origin)) return -2;
        } else if (it.next < 0) {  /* finished: what waited for its left side advances */
            int32_t a = P->lhs[it.rule];
            if (a == P->start && it.origin == 0) accepting = 1;
            const Set *o = &P->sets[it.origin];
            int32_t lo, hi;
            range_of(P->ipool + o->items, o->n_items, a, &lo, &hi);
            for (int32_t k = lo; k < hi; k++) {
                const Item *w = &P->ipool[o->items + k];
                if (push(P, &n, w->rule, w->dot + 1, w->origin)) return -2;
            }
            const Pred *q = &P->preds[o->pred];
            range_of(P->ipool + q->items, q->n_items, a, &lo, &hi);
            for (int32_t k = lo; k < hi; k++) {
                const Item *w = &P->ipool[q->items + k];
                if (push(P, &n, w->rule, w->dot + 1, it.origin)) return -2;
            }
        }
    }
    /* the live (unfinished) items, sorted: the set's identity */
    int64_t live = 0;
    if (grow((void **)&P->agenda, &P->agenda_cap, P->found_n, sizeof(Item))) return -2;
    for (int64_t i = 0; i < P->found_n; i++)
        if (P->found[i].next >= 0) P->agenda[live++] = P->found[i];  /* (agenda is free now) */
    qsort(P->agenda, (size_t)live, sizeof(Item), item_cmp);
    uint64_t h = mix(1469598103934665603ULL, (uint64_t)accepting);
    for (int64_t i = 0; i < live; i++) {
        const Item *x = &P->agenda[i];
        h = mix(mix(mix(h, (uint64_t)x->rule), (uint64_t)x->dot), (uint64_t)x->origin);
    }
    for (int32_t s = table_get(&P->interned, h); s >= 0; s = P->chain[s]) {
        const Set *o = &P->sets[s];
        if (o->accepting == accepting && o->n_items == live &&
            !memcmp(P->ipool + o->items, P->agenda, (size_t)live * sizeof(Item)))
            return s;
    }
    qsort(P->nts, (size_t)n_nts, sizeof(int32_t), int_cmp);
    int32_t pred = prediction(P, P->nts, n_nts);
    if (pred < 0) return -2;
    if (grow32((void **)&P->sets, &P->sets_cap, P->n_sets + 1, sizeof(Set))) return -2;
    if (grow32((void **)&P->chain, &P->chain_cap, P->n_sets + 1, sizeof(int32_t))) return -2;
    if (grow((void **)&P->ipool, &P->ipool_cap, P->ipool_n + live, sizeof(Item))) return -2;
    int32_t id = P->n_sets;
    Set s;
    s.items = P->ipool_n;
    s.n_items = (int32_t)live;
    memcpy(P->ipool + P->ipool_n, P->agenda, (size_t)live * sizeof(Item));
    P->ipool_n += live;
    s.pred = pred;
    s.accepting = accepting;
    /* expected terminals: the kernel's (in order) merged with the prediction's */
    const Pred *q = &P->preds[pred];
    if (grow((void **)&P->terms, &P->terms_cap, live + q->n_terms, sizeof(int32_t))) return -2;
    int64_t t = 0;
    uint32_t tg = g;
    for (int64_t i = 0; i < live; i++) {
        int32_t x = P->ipool[s.items + i].next;
        if (x < P->n_terminals && P->tstamp[x] != tg) { P->tstamp[x] = tg; P->terms[t++] = x; }
    }
    for (int32_t i = 0; i < q->n_terms; i++) {
        int32_t x = P->zpool[q->terms + i];
        if (P->tstamp[x] != tg) { P->tstamp[x] = tg; P->terms[t++] = x; }
    }
    qsort(P->terms, (size_t)t, sizeof(int32_t), int_cmp);
    if (grow((void **)&P->zpool, &P->zpool_cap, P->zpool_n + t, sizeof(int32_t))) return -2;
    s.expected = P->zpool_n;
    s.n_expected = (int32_t)t;
    memcpy(P->zpool + P->zpool_n, P->terms, (size_t)t * sizeof(int32_t));
    P->zpool_n += t;
    P->sets[id] = s;
    if (remember(&P->interned, P->chain, h, id)) return -2;
    P->n_sets++;
    return id;
}

void structgen_earley_free(Parser *P) {
    if (!P) return;
    void *own[] = {P->lhs, P->rhs_start, P->rhs_len, P->rhs, P->nullable, P->by_lhs_start,
                   P->by_lhs, P->direct_start, P->direct, P->closure_off, P->closure_len,
                   P->ipool, P->zpool, P->sets, P->preds, P->scans.slots, P->interned.slots,
                   P->pred_of.slots, P->chain, P->pchain, P->stamp, P->agenda, P->found,
                   P->seen, P->nts, P->terms, P->tstamp, P->cstamp, P->cl};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) free(own[i]);
    free(P);
}

static void *copy(const void *src, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (p && bytes) memcpy(p, src, bytes);
    return p;
}

/* A parser for rules (lhs[i], rhs[rhs_start[i] .. rhs_start[i+1])) over symbols 0..n_symbols
 * (terminals first), with its initial set (id 0). NULL if memory runs out. */
Parser *structgen_earley_new(int32_t n_terminals, int32_t n_symbols, int32_t n_rules,
                             const int32_t *lhs, const int32_t *rhs_start, const int32_t *rhs,
                             const uint8_t *nullable, int32_t start) {
    Parser *P = (Parser *)calloc(1, sizeof(Parser));
    if (!P) return NULL;
    P->n_terminals = n_terminals;
    P->n_symbols = n_symbols;
    P->n_rules = n_rules;
    P->start = start;
    int32_t total = rhs_start[n_rules];
    P->lhs = (int32_t *)copy(lhs, (size_t)n_rules * 4);
    P->rhs_start = (int32_t *)copy(rhs_start, (size_t)(n_rules + 1) * 4);
    P->rhs = (int32_t *)copy(rhs, (size_t)total * 4);
    P->nullable = (uint8_t *)copy(nullable, (size_t)n_symbols);
    P->rhs_len = (int32_t *)malloc((size_t)(n_rules ? n_rules : 1) * 4);
    P->by_lhs_start = (int32_t *)calloc((size_t)n_symbols + 1, 4);
    P->by_lhs = (int32_t *)malloc((size_t)(n_rules ? n_rules : 1) * 4);
    P->direct_start = (int32_t *)calloc((size_t)n_symbols + 1, 4);
    P->direct = (int32_t *)malloc((size_t)(total ? total : 1) * 4);
    P->closure_off = (int32_t *)malloc((size_t)n_symbols * 4);
    P->closure_len = (int32_t *)malloc((size_t)n_symbols * 4);
    P->stamp = (uint32_t *)calloc((size_t)n_symbols, 4);
    P->tstamp = (uint32_t *)calloc((size_t)n_symbols, 4);
    P->cstamp = (uint32_t *)calloc((size_t)n_symbols, 4);
    if (!P->lhs || !P->rhs_start || !P->rhs || !P->nullable || !P->rhs_len || !P->by_lhs_start
        || !P->by_lhs || !P->direct_start || !P->direct || !P->closure_off || !P->closure_len
        || !P->stamp || !P->tstamp || !P->cstamp || table_init(&P->scans, 1024)
        || table_init(&P->interned, 1024) || table_init(&P->pred_of, 256)) {
        structgen_earley_free(P);
        return NULL;
    }
    for (int32_t s = 0; s < n_symbols; s++) P->closure_off[s] = -1;
    for (int32_t r = 0; r < n_rules; r++) {
        P->rhs_len[r] = rhs_start[r + 1] - rhs_start[r];
        P->by_lhs_start[lhs[r] + 1]++;
    }
    for (int32_t s = 0; s < n_symbols; s++) P->by_lhs_start[s + 1] += P->by_lhs_start[s];
    int32_t *fill = (int32_t *)copy(P->by_lhs_start, (size_t)(n_symbols + 1) * 4);
    if (!fill) { structgen_earley_free(P); return NULL; }
    for (int32_t r = 0; r < n_rules; r++) P->by_lhs[fill[lhs[r]]++] = r;
    /* direct predictions: nonterminals at the start of a rule, past nullable symbols (a
     * symbol listed once per rule is enough: the closure walk dedups) */
    int32_t nd = 0;
    for (int32_t a = 0; a < n_symbols; a++) {
        P->direct_start[a] = nd;
        for (int32_t j = P->by_lhs_start[a]; j < P->by_lhs_start[a + 1]; j++) {
            int32_t r = P->by_lhs[j];
            for (int32_t d = 0; d < P->rhs_len[r]; d++) {
                int32_t x = rhs[rhs_start[r] + d];
                if (x >= n_terminals) P->direct[nd++] = x;
                if (x < n_terminals || !nullable[x]) break;
            }
        }
    }
    P->direct_start[n_symbols] = nd;
    free(fill);
    /* the initial set: the start symbol predicted (as if in a set before it), nothing else */
    int64_t off;
    int32_t len;
    if (closure_of(P, start, &off, &len)) { structgen_earley_free(P); return NULL; }
    int32_t *nts = (int32_t *)copy(P->zpool + off, (size_t)len * 4);
    if (!nts) { structgen_earley_free(P); return NULL; }
    qsort(nts, (size_t)len, sizeof(int32_t), int_cmp);
    int32_t pred = prediction(P, nts, len);
    free(nts);
    if (pred < 0 || grow32((void **)&P->sets, &P->sets_cap, 1, sizeof(Set))
        || grow32((void **)&P->chain, &P->chain_cap, 1, sizeof(int32_t))) {
        structgen_earley_free(P);
        return NULL;
    }
    /* the start symbol's items are its kernel too (origin: itself), as the Python parser
     * builds it: a union with the initial set keeps the root as their origin, where finishing
     * the start symbol accepts */
    const Pred *q = &P->preds[pred];
    if (grow((void **)&P->ipool, &P->ipool_cap, P->ipool_n + q->n_items, sizeof(Item))) {
        structgen_earley_free(P);
        return NULL;
    }
    q = &P->preds[pred];
    int32_t m = 0;
    for (int32_t i = 0; i < q->n_items; i++) {
        Item it = P->ipool[q->items + i];
        if (lhs[it.rule] != start) continue;
        it.origin = 0;
        P->ipool[P->ipool_n + m++] = it;
    }
    Set s = {P->ipool_n, m, pred, nullable[start] ? 1 : 0, q->n_terms, q->terms};
    P->ipool_n += m;
    P->sets[0] = s;
    P->chain[0] = -1;  /* never interned: no other set has the root's predictions as its own */
    P->n_sets = 1;
    return P;
}

/* The set after `terminal` from `set`: its id, -1 if the terminal cannot come next, -2 if
 * memory ran out. */
int32_t structgen_earley_scan(Parser *P, int32_t set, int32_t terminal) {
    uint64_t key = ((uint64_t)(uint32_t)set << 32) | (uint32_t)terminal;
    int32_t got = table_get(&P->scans, key);
    if (got >= 0) return got;
    int64_t n = 0;
    const Set *o = &P->sets[set];
    int32_t lo, hi;
    range_of(P->ipool + o->items, o->n_items, terminal, &lo, &hi);
    for (int32_t k = lo; k < hi; k++) {
        const Item w = P->ipool[o->items + k];
        if (push(P, &n, w.rule, w.dot + 1, w.origin)) return -2;
    }
    const Pred *q = &P->preds[o->pred];
    range_of(P->ipool + q->items, q->n_items, terminal, &lo, &hi);
    for (int32_t k = lo; k < hi; k++) {
        const Item w = P->ipool[q->items + k];
        if (push(P, &n, w.rule, w.dot + 1, set)) return -2;
    }
    if (n == 0) return -1;
    got = build(P, n, 0);
    if (got >= 0 && table_put(&P->scans, key, got)) return -2;
    return got;
}

/* One set standing for sets[0..n) at one position: their kernel items together, predictions
 * redone (items predicted in a member keep it as their origin only through its own items). */
int32_t structgen_earley_union(Parser *P, const int32_t *sets, int32_t n_sets) {
    int64_t n = 0;
    int accepting = 0;
    for (int32_t i = 0; i < n_sets; i++) {
        const Set *o = &P->sets[sets[i]];
        accepting |= o->accepting;
        for (int32_t k = 0; k < o->n_items; k++) {
            const Item w = P->ipool[o->items + k];
            if (push(P, &n, w.rule, w.dot, w.origin)) return -2;
        }
    }
    return build(P, n, accepting);
}

/* Write [accepting, n, expected terminals...] of a set to out (room for cap ints); returns
 * 2 + n (call again with more room if that exceeds cap). */
int32_t structgen_earley_info(const Parser *P, int32_t set, int32_t *out, int32_t cap) {
    const Set *s = &P->sets[set];
    if (cap >= 2 + s->n_expected) {
        out[0] = s->accepting;
        out[1] = s->n_expected;
        memcpy(out + 2, P->zpool + s->expected, (size_t)s->n_expected * 4);
    }
    return 2 + s->n_expected;
}

/* Write the set's unfinished items as (rule, dot, origin) triples, its predicted ones with
 * origin `set`; returns 3 * count (call again with more room if that exceeds cap). */
int32_t structgen_earley_items(const Parser *P, int32_t set, int32_t *out, int32_t cap) {
    const Set *s = &P->sets[set];
    const Pred *q = &P->preds[s->pred];
    int32_t need = 3 * (s->n_items + q->n_items);
    if (cap < need) return need;
    int32_t k = 0;
    for (int32_t i = 0; i < s->n_items; i++) {
        const Item *x = &P->ipool[s->items + i];
        out[k++] = x->rule; out[k++] = x->dot; out[k++] = x->origin;
    }
    for (int32_t i = 0; i < q->n_items; i++) {
        const Item *x = &P->ipool[q->items + i];
        out[k++] = x->rule; out[k++] = x->dot; out[k++] = set;
    }
    return need;
}
