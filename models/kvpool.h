/* The paged KV cache's bookkeeping: a pool of fixed-size blocks of cache rows shared by several
 * sequences (docs/batching.md). Host-side only: it says which physical rows a token goes to and
 * which blocks must be copied before a write (copy on write); the session moves the data.
 *
 * A sequence is a list of blocks; logical position j lives at row blk[j / bs] * bs + j % bs.
 * Blocks are reference-counted: forking a sequence shares all its blocks, and the first write
 * into a shared, partially filled last block copies it first. */
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
} loom_kvpool;

/* A block copy the caller must perform before writing the batch: rows of block src -> block dst. */
typedef struct loom_kvcopy { int src, dst; } loom_kvcopy;

int loom_kvpool_init(loom_kvpool *p, int n_blocks, int bs);
void loom_kvpool_free(loom_kvpool *p);
/* Forget every sequence; every block becomes free. */
void loom_kvpool_clear(loom_kvpool *p);
int loom_kvpool_n_live(const loom_kvpool *p);
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
/* Append n tokens to sequence id: their physical rows go to slots[0..n). A shared last block that
 * would be written is replaced by a fresh copy, reported in copies[*n_copies++] (room for 1).
 * Fails without changing anything when the pool or the sequence's table is full. */
int loom_kvpool_append(loom_kvpool *p, int id, int n, int32_t *slots, loom_kvcopy *copies, int *n_copies);
/* Shorten sequence id to len tokens, releasing the blocks past it (undoing a failed append). */
void loom_kvpool_truncate(loom_kvpool *p, int id, int len);

#endif
