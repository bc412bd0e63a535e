/* structgen's compiled kernels (see native.py): the token trie in preorder, walked depth
 * first under a full transition table or a lexeme's first-byte walk (alone, or two side by
 * side), and two searches over DFAs. Plain C with no Python API: loaded with ctypes. */
#include <stdint.h>

/* What a walk reads its next state from: a full transition table (the next state of (state
 * s, byte b) is table[s * 256 + b]), or, where `table` is null, a lexeme's first-byte walk
 * (grammar.py, `_FirstByteWalk`) over a DFA of n states (`transitions`, -1 dead; `accepting`)
 * and the bytes another lexeme may start with (`starts`), computed as it goes: state
 * 3 * s + phase goes on byte b to 3 * t + 1 after phase 0 or 1 (+ 1 more after phase 1 where s
 * accepts and b is in `starts`: the lexeme could have ended), or 3 * t + 2 after phase 2,
 * where t is the DFA's next state (n when dead). A walk never continues from a dead DFA
 * state: 3n + 1 is its sink and 3n + 2 its absorbing state. */
typedef struct {
    const int32_t *table;
    const int32_t *transitions;
    const uint8_t *accepting, *starts;
    int32_t n;
} source_t;

static inline int32_t next_state(const source_t *src, int32_t x, uint8_t b) {
    if (src->table != 0)
        return src->table[(int64_t)x * 256 + b];
    int32_t s = x / 3, phase = x - 3 * s;
    int32_t t = src->transitions[(int64_t)s * 256 + b];
    int32_t next = 3 * (t < 0 ? src->n : t) + 1;
    if (phase == 2)
        return next + 1;
    return phase == 1 ? next + (src->accepting[s] & src->starts[b]) : next;
}

/* Walk the trie from state `start`: node i (preorder) holds byte[i] at depth[i]; its subtree
 * ends before node end[i]; the tokens ending at it are tokens[tok_start[i] .. tok_start[i+1]),
 * so a subtree's tokens are tokens[tok_start[i] .. tok_start[end[i]]). `sink` is dead (its
 * subtree is skipped) and `absorbing` (or -1) a state every byte keeps (its subtree's tokens
 * all end in it). With `first` non-null, first-level bytes b with first[b] == 0 are dead.
 * `stack` holds one state per depth (max depth + 1). Writes each live token and its end state
 * to out_ids/out_states (room for every token) and returns how many. With `split` (k at least
 * 0), tokens ending below state `split` go to out_ids from the front, the others from the back
 * (from index k - 1 down), out_states is not written, and *n_back gets how many went there. */
static inline int64_t walk(const uint8_t *byte, const int32_t *depth, const int32_t *end,
                           const int32_t *tok_start, const int64_t *tokens, int64_t n_nodes,
                           const source_t *src, int32_t sink, int32_t absorbing, int32_t start,
                           const uint8_t *first, int32_t *stack, int64_t *out_ids,
                           int32_t *out_states, int32_t split, int64_t *n_back) {
    int64_t k = 0, i = 0, back = split >= 0 ? *n_back : 0, top = back;
    stack[0] = start;
    while (i < n_nodes) {
        int32_t d = depth[i];
        uint8_t b = byte[i];
        int32_t s = next_state(src, stack[d], b);
        if (d == 0 && first != 0 && first[b] == 0)
            s = sink;
        if (s == sink) {
            i = end[i];
            continue;
        }
        int32_t last = (s == absorbing) ? tok_start[end[i]] : tok_start[i + 1];
        if (split < 0) {
            for (int32_t t = tok_start[i]; t < last; t++) {
                out_ids[k] = tokens[t];
                out_states[k] = s;
                k++;
            }
        } else if (s < split) {
            for (int32_t t = tok_start[i]; t < last; t++)
                out_ids[k++] = tokens[t];
        } else {
            for (int32_t t = tok_start[i]; t < last; t++)
                out_ids[--back] = tokens[t];
        }
        if (s == absorbing) {
            i = end[i];
        } else {
            stack[d + 1] = s;
            i++;
        }
    }
    if (split >= 0)
        *n_back = top - back;
    return k;
}

/* `walk` under a full transition table. */
int64_t structgen_trie_walk(const uint8_t *byte, const int32_t *depth, const int32_t *end,
                            const int32_t *tok_start, const int64_t *tokens, int64_t n_nodes,
                            const int32_t *table, int32_t sink, int32_t absorbing,
                            int32_t start, const uint8_t *first, int32_t *stack,
                            int64_t *out_ids, int32_t *out_states) {
    source_t src = {table, 0, 0, 0, 0};
    return walk(byte, depth, end, tok_start, tokens, n_nodes, &src, sink, absorbing, start,
                first, stack, out_ids, out_states, -1, 0);
}

/* A lexeme's first-byte walk from `start` split as `_SharedLexeme.split` needs it: the tokens
 * read inside the DFA (ending in a live DFA state, below 3n) to out_ids from the front
 * (returns how many), the others (those that may leave it) from index k - 1 down, where k is
 * *n_back on entry (the buffer's room for every token); *n_back gets how many. No table to
 * build (a key DFA's would be 3 KB per state), no end states to write and sort out after. */
int64_t structgen_first_byte_split(const uint8_t *byte, const int32_t *depth,
                                   const int32_t *end, const int32_t *tok_start,
                                   const int64_t *tokens, int64_t n_nodes,
                                   const int32_t *transitions, const uint8_t *accepting,
                                   const uint8_t *starts, int32_t n, int32_t start,
                                   int32_t *stack, int64_t *out_ids, int64_t *n_back) {
    source_t src = {0, transitions, accepting, starts, n};
    return walk(byte, depth, end, tok_start, tokens, n_nodes, &src, 3 * n + 1, 3 * n + 2, start,
                0, stack, out_ids, 0, 3 * n, n_back);
}

/* The first-byte walks of many lexemes at once (a key position's key literals: hundreds of
 * small DFAs, each a walk of the same few trie nodes), each split as
 * `structgen_first_byte_split` would. Lexeme j walks DFA dfas[4j .. 4j + 4) (addresses of its
 * transitions, accepting, start bytes, and n) from walk state states[j]. `lexeme` and `state`
 * hold the lexemes still walking per depth (n_lex entries a depth, max depth + 2 depths).
 * Writes (2j, token) pairs for the tokens read inside lexeme j and (2j + 1, token) for those
 * that may leave it, and returns how many; -1 past `capacity` pairs. */
int64_t structgen_first_byte_split_many(const uint8_t *byte, const int32_t *depth,
                                        const int32_t *end, const int32_t *tok_start,
                                        const int64_t *tokens, int64_t n_nodes,
                                        const int64_t *dfas, int32_t n_lex,
                                        const int32_t *states, int32_t *lexeme, int32_t *state,
                                        int32_t *count, int64_t *out, int64_t capacity) {
    int64_t k = 0, i = 0;
    count[0] = 0;
    for (int32_t j = 0; j < n_lex; j++) {
        if (states[j] < 3 * (int32_t)dfas[4 * j + 3]) {
            lexeme[count[0]] = j;
            state[count[0]++] = states[j];
        }
    }
    while (i < n_nodes) {
        int32_t d = depth[i];
        uint8_t b = byte[i];
        const int32_t *from_lex = lexeme + (int64_t)d * n_lex, *from = state + (int64_t)d * n_lex;
        int32_t *to_lex = lexeme + (int64_t)(d + 1) * n_lex, *to = state + (int64_t)(d + 1) * n_lex;
        int32_t kept = 0;
        for (int32_t e = 0; e < count[d]; e++) {
            int32_t j = from_lex[e];
            const int64_t *dfa = dfas + 4 * j;
            int32_t n = (int32_t)dfa[3];
            source_t src = {0, (const int32_t *)dfa[0], (const uint8_t *)dfa[1],
                            (const uint8_t *)dfa[2], n};
            int32_t x = next_state(&src, from[e], b), last;
            int64_t tag;
            if (x < 3 * n) {
                to_lex[kept] = j;
                to[kept++] = x;
                tag = 2 * (int64_t)j, last = tok_start[i + 1];
            } else if (x == 3 * n + 2) {
                tag = 2 * (int64_t)j + 1, last = tok_start[end[i]];
            } else {
                continue;
            }
            if (k + (last - tok_start[i]) > capacity)
                return -1;
            for (int32_t t = tok_start[i]; t < last; t++) {
                out[2 * k] = tag;
                out[2 * k + 1] = tokens[t];
                k++;
            }
        }
        count[d + 1] = kept;
        i = kept ? i + 1 : end[i];
    }
    return k;
}

int32_t structgen_equivalent(const int32_t *ta, const uint8_t *acc_a, const int32_t *tb,
                             const uint8_t *acc_b, int32_t nb, int32_t p, int32_t q,
                             int32_t limit, int8_t *known, int64_t *buffer);

/* Two first-byte walks side by side (`_SharedLexeme.split` proving a split from another
 * state's): A over DFA `ta` (na states), B over `tb` (nb states), under the same `starts`.
 * `known` and `buffer` are `structgen_equivalent`'s (A's state p against B's q); with `known`
 * null, A and B are one DFA. */
typedef struct {
    const int32_t *ta, *tb;
    const uint8_t *acc_a, *acc_b, *starts;
    int32_t na, nb, limit;
    int8_t *known;
    int64_t *buffer;
} pair_t;

/* A first-byte walk's next state, where sink and absorbing keep themselves. */
static inline int32_t pair_next(const int32_t *tr, const uint8_t *acc, const uint8_t *starts,
                                int32_t n, int32_t x, uint8_t b) {
    if (x >= 3 * n)
        return x;
    source_t src = {0, tr, acc, starts, n};
    return next_state(&src, x, b);
}

/* Whether every token walks to the same class from A's state x as from B's y: both the sink,
 * both absorbing, or the same phase with equivalent DFA states (equal, for one DFA). */
static inline int pair_alike(const pair_t *p, int32_t x, int32_t y) {
    int32_t fx = x >= 3 * p->na ? x - 3 * p->na : -1, fy = y >= 3 * p->nb ? y - 3 * p->nb : -1;
    if (fx >= 0 || fy >= 0)
        return fx == fy;
    if (p->known == 0)
        return x == y;
    return x % 3 == y % 3 &&
           structgen_equivalent(p->ta, p->acc_a, p->tb, p->acc_b, p->nb, x / 3, y / 3, p->limit,
                                p->known, p->buffer);
}

/* Walk the trie (preorder, as `walk`) from A's state x0 and B's y0 together, below the nodes
 * where their states are not alike (alike states classify every token below alike). Writes
 * (first, end, class under A) triples of token ranges tokens[first .. end) whose class under A
 * (0 inside, 1 dead, 2 may leave) differs from theirs under B, and returns how many; -1 past
 * `budget` nodes (out has room for 3 * budget entries; `stack` for two states per depth). */
int64_t structgen_first_byte_diff(const uint8_t *byte, const int32_t *depth, const int32_t *end,
                                  const int32_t *tok_start, int64_t n_nodes,
                                  const int32_t *ta, const uint8_t *acc_a, const int32_t *tb,
                                  const uint8_t *acc_b, const uint8_t *starts, int32_t na,
                                  int32_t nb, int8_t *known, int32_t limit, int64_t *buffer,
                                  int32_t x0, int32_t y0, int64_t budget, int32_t *stack,
                                  int64_t *out) {
    pair_t p = {ta, tb, acc_a, acc_b, starts, na, nb, limit, known, buffer};
    int64_t k = 0, i = 0, visited = 0;
    stack[0] = x0;
    stack[1] = y0;
    while (i < n_nodes) {
        if (++visited > budget)
            return -1;
        int32_t d = depth[i];
        uint8_t b = byte[i];
        int32_t x = pair_next(ta, acc_a, starts, na, stack[2 * d], b);
        int32_t y = pair_next(tb, acc_b, starts, nb, stack[2 * d + 1], b);
        if (pair_alike(&p, x, y)) {
            i = end[i];
            continue;
        }
        int32_t ca = x < 3 * na ? 0 : x - 3 * na, cb = y < 3 * nb ? 0 : y - 3 * nb;
        if (ca != 0 && cb != 0) { /* both fixed for the subtree, and not alike: all differ */
            out[3 * k] = tok_start[i], out[3 * k + 1] = tok_start[end[i]], out[3 * k + 2] = ca;
            k++;
            i = end[i];
            continue;
        }
        if (ca != cb && tok_start[i] < tok_start[i + 1]) {
            out[3 * k] = tok_start[i], out[3 * k + 1] = tok_start[i + 1], out[3 * k + 2] = ca;
            k++;
        }
        stack[2 * d + 2] = x;
        stack[2 * d + 3] = y;
        i++;
    }
    return k;
}

/* Whether a cycle is reachable from `root` in the graph of a DFA's transitions (n states of
 * 256 bytes, negative = none): bytedfa.py's `EndlessStates._search`, depth first, stopping at
 * the first cycle. verdict[s] carries what earlier searches found (0 unknown, 1 endless,
 * 2 finite) and gets what this one finds; 3 marks the path while it runs. `stack` has room
 * for 2n entries (the path, and the next byte to try at each of its states). */
int32_t structgen_endless(const int32_t *transitions, int32_t n, int32_t root, int8_t *verdict,
                          int32_t *stack) {
    int32_t *next_byte = stack + n, top = 0;
    if (verdict[root] == 1 || verdict[root] == 2)
        return verdict[root] == 1;
    stack[0] = root;
    next_byte[0] = 0;
    verdict[root] = 3;
    while (top >= 0) {
        const int32_t *row = transitions + (int64_t)stack[top] * 256;
        int32_t b = next_byte[top];
        for (; b < 256; b++) {
            int32_t t = row[b];
            if (t < 0 || verdict[t] == 2)
                continue;
            if (verdict[t] != 0) { /* endless, or on the path: a cycle */
                for (int32_t i = 0; i <= top; i++)
                    verdict[stack[i]] = 1;
                return 1;
            }
            break;
        }
        if (b < 256) { /* an unknown successor: go down */
            next_byte[top] = b + 1;
            stack[++top] = row[b];
            next_byte[top] = 0;
            verdict[row[b]] = 3;
        } else { /* every successor finite */
            verdict[stack[top--]] = 2;
        }
    }
    return 0;
}

/* Whether DFA state p of A and q of B accept the same strings: grammar.py's
 * `_Bisimilar.equivalent`. Their product closure must agree everywhere on acceptance and on
 * which bytes have a transition (both DFAs are trimmed); more than `limit` pairs, or a pair
 * known not to agree, answers no. known[x * nb + y] holds verdicts across calls (0 unknown,
 * 1 equivalent, 2 not or not proved; 3 marks this search's pairs while it runs); `buffer`
 * has room for 2 * (limit + 257) pairs (those met, and those still to expand). */
int32_t structgen_equivalent(const int32_t *ta, const uint8_t *acc_a, const int32_t *tb,
                             const uint8_t *acc_b, int32_t nb, int32_t p, int32_t q,
                             int32_t limit, int8_t *known, int64_t *buffer) {
    int64_t root = (int64_t)p * nb + q;
    int64_t *met = buffer, *todo = buffer + limit + 257;
    int32_t n_met = 1, n_todo = 1, ok = 1;
    if (known[root] == 1 || known[root] == 2)
        return known[root] == 1;
    met[0] = todo[0] = root;
    known[root] = 3;
    while (ok && n_todo > 0) {
        int64_t pair = todo[--n_todo];
        int32_t x = (int32_t)(pair / nb), y = (int32_t)(pair % nb);
        const int32_t *row_a = ta + (int64_t)x * 256, *row_b = tb + (int64_t)y * 256;
        if (n_met > limit || acc_a[x] != acc_b[y]) {
            ok = 0;
            break;
        }
        for (int b = 0; b < 256; b++) {
            int32_t u = row_a[b], v = row_b[b];
            if ((u < 0) != (v < 0)) {
                ok = 0;
                break;
            }
            if (u < 0)
                continue;
            int64_t next = (int64_t)u * nb + v;
            int8_t verdict = known[next];
            if (verdict == 2) {
                ok = 0;
                break;
            }
            if (verdict == 0) {
                known[next] = 3;
                met[n_met++] = todo[n_todo++] = next;
            }
        }
    }
    for (int32_t i = 0; i < n_met; i++)
        known[met[i]] = ok ? 1 : 0;
    if (!ok)
        known[root] = 2;
    return ok;
}
