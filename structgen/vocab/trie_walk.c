/* structgen's compiled trie walk (see native.py): the token trie in preorder, walked depth
 * first under a full transition table. Plain C with no Python API: loaded with ctypes. */
#include <stdint.h>

/* Walk the trie from state `start`: node i (preorder) holds byte[i] at depth[i]; its subtree
 * ends before node end[i]; the tokens ending at it are tokens[tok_start[i] .. tok_start[i+1]),
 * so a subtree's tokens are tokens[tok_start[i] .. tok_start[end[i]]). The next state of
 * (state s, byte b) is table[s * 256 + b]; `sink` is dead (its subtree is skipped) and
 * `absorbing` (or -1) a state every byte keeps (its subtree's tokens all end in it). With
 * `first` non-null, first-level bytes b with first[b] == 0 are dead. `stack` holds one state
 * per depth (max depth + 1). Writes each live token and its end state to out_ids/out_states
 * (room for every token) and returns how many. */
int64_t structgen_trie_walk(const uint8_t *byte, const int32_t *depth, const int32_t *end,
                            const int32_t *tok_start, const int64_t *tokens, int64_t n_nodes,
                            const int32_t *table, int32_t sink, int32_t absorbing,
                            int32_t start, const uint8_t *first, int32_t *stack,
                            int64_t *out_ids, int32_t *out_states) {
    int64_t k = 0, i = 0;
    stack[0] = start;
    while (i < n_nodes) {
        int32_t d = depth[i];
        uint8_t b = byte[i];
        int32_t s = table[(int64_t)stack[d] * 256 + b];
        if (d == 0 && first != 0 && first[b] == 0)
            s = sink;
        if (s == sink) {
            i = end[i];
            continue;
        }
        int32_t last = (s == absorbing) ? tok_start[end[i]] : tok_start[i + 1];
        for (int32_t t = tok_start[i]; t < last; t++) {
            out_ids[k] = tokens[t];
            out_states[k] = s;
            k++;
        }
        if (s == absorbing) {
            i = end[i];
        } else {
            stack[d + 1] = s;
            i++;
        }
    }
    return k;
}
