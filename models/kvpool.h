/* The paged KV cache's bookkeeping: a pool of fixed-size blocks of cache rows shared by several
 * sequences (docs/batching.md). Host-side only: it says which physical rows a token goes to and
 * which blocks must be copied before a write (copy on write); the session moves the data.
 *
 * A sequence is a list of blocks; logical position j lives at row blk[j / bs] * bs + j % bs.
 * Blocks are reference-counted: forking a sequence shares all its blocks, and the first write
 * into a shared, partially filled last block copies it first.
 *
 * Prefix cache (optional, loom_kvpool_prefix): a block that fills up is registered under the hash
 * chain of its tokens (its own 16 token ids and its parent block's hash, so it stands for the
 * whole prefix up to its end at its positions). A new sequence given its prompt starts with the
 * registered blocks of its longest cached prefix (loom_kvpool_seq_new_prefix). A registered block
 * whose last owner lets go stays cached (references 0) on an LRU list; it counts as available and
 * is evicted, oldest first, when the free list is empty. */
#ifndef LOOM_KVPOOL_H
#define LOOM_KVPOOL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct loom_kvseq {
    bool live;
    int len;   /* tokens held */
    int n_blk; /* blocks held: ceil(len / bs) */
    int *blk;  /* [max_blk] */
} loom_kvseq;

typedef struct loom_kvpool {
    int bs, n_blocks, max_blk; /* rows per block, blocks in the pool, blocks one sequence may hold */
    int *ref;                  /* [n_blocks] owners of each block (0: free) */
    int *free_list, n_free;    /* stack of free blocks */
    loom_kvseq *seq;
    int n_seq, cap_seq;        /* ids 0..n_seq-1 have been handed out; freed ids are reused */
    /* prefix cache */
    bool prefix;               /* register full blocks and keep them after their last owner */
    int32_t *tok;              /* [n_blocks * bs] the token id written to each row */
    uint64_t *hash, *parent;   /* [n_blocks] chain hash of a full block, and its parent's */
    bool *cached;              /* [n_blocks] registered in the table */
    int *bucket, n_bucket;     /* hash table heads (n_bucket a power of two), chained through hnext */
    int *hnext;
    int *lprev, *lnext, lru_head, lru_tail, n_lru; /* cached blocks nobody holds, oldest first */
    int n_cached;              /* blocks in the table */
    uint64_t evictions;        /* cached blocks taken back for other use */
} loom_kvpool;

/* A block copy the caller must perform before writing the batch: rows of block src -> block dst. */
typedef struct loom_kvcopy { int src, dst; } loom_kvcopy;

int loom_kvpool_init(loom_kvpool *p, int n_blocks, int bs);
void loom_kvpool_free(loom_kvpool *p);
/* Forget every sequence; every block becomes free. */
void loom_kvpool_clear(loom_kvpool *p);
int loom_kvpool_n_live(const loom_kvpool *p);
/* Blocks an append may take: the free list plus cached blocks nobody holds (evicted on demand). */
int loom_kvpool_available(const loom_kvpool *p);
/* Turn the prefix cache on or off (off forgets every cached block). */
void loom_kvpool_prefix(loom_kvpool *p, bool on);
/* A new sequence holding the longest cached prefix of tokens[0..n) in whole blocks, at most n - 1
 * tokens (the last one must be evaluated for its logits): its id; its len says how many tokens
 * it holds. Without the prefix cache, an empty sequence. */
int loom_kvpool_seq_new_prefix(loom_kvpool *p, const int32_t *tokens, int n);
/* A new empty sequence: its id (>= 0), or -1 with an error. */
int loom_kvpool_seq_new(loom_kvpool *p);
/* A new sequence sharing every block of sequence id (its whole history). */
int loom_kvpool_seq_fork(loom_kvpool *p, int id);
int loom_kvpool_seq_free(loom_kvpool *p, int id);
/* The sequence, or NULL with an error naming the id. */
loom_kvseq *loom_kvpool_get(loom_kvpool *p, int id);
/* Blocks that appending need[i] tokens to sequence ids[i] (i < n, distinct ids) would take from
 * the free list, copies included. */
int loom_kvpool_blocks_needed(const loom_kvpool *p, const int *ids, const int *need, int n);
/* Append tokens[0..n) to sequence id (tokens may be NULL: then they are recorded as -1 and the
 * blocks they fill are never cached): their physical rows go to slots[0..n). A shared last block
 * that would be written is replaced by a fresh copy, reported in copies[*n_copies++] (room for 1).
 * Blocks that fill up are registered in the prefix cache (the caller must write their rows before
 * the next loom_kvpool_seq_new_prefix, or truncate them away). Fails without changing anything
 * when the pool or the sequence's table is full. */
int loom_kvpool_append(loom_kvpool *p, int id, int n, const int32_t *tokens, int32_t *slots, loom_kvcopy *copies,
                       int *n_copies);
/* Shorten sequence id to len tokens, releasing the blocks past it (undoing a failed append: the
 * blocks it registered are forgotten, since their rows were never written). */
void loom_kvpool_truncate(loom_kvpool *p, int id, int len);

#endif
