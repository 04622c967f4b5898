/* Graph dumps: text for people, DOT for Graphviz, JSON for tools. The JSON schema is documented in
 * docs/graph-dump.md; keep the two in step. */
#include "graph/graph.h"

#include "core/util.h"

#include <stdlib.h>

static const char *storage_name(loom_storage s) {
    switch (s) {
    case LOOM_STORE_ARENA: return "arena";
    case LOOM_STORE_WEIGHT: return "weight";
    case LOOM_STORE_STATE: return "state";
    default: return "none";
    }
}

void loom_shape_str(const loom_node *n, char *buf, size_t len) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int d = 0; d < n->ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, d ? ",%lld" : "%lld", (long long)n->ne[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

void loom_params_str(const loom_node *n, char *buf, size_t len) {
    buf[0] = 0;
    switch (n->op) {
    case LOOM_OP_SCALE: snprintf(buf, len, "s=%g", (double)n->fp[0]); break;
    case LOOM_OP_RMSNORM: snprintf(buf, len, "eps=%g", (double)n->fp[0]); break;
    case LOOM_OP_SOFTMAX: snprintf(buf, len, "scale=%g", (double)n->fp[0]); break;
    case LOOM_OP_SOFTCAP: snprintf(buf, len, "cap=%g", (double)n->fp[0]); break;
    case LOOM_OP_MOE: snprintf(buf, len, "experts_used=%d%s", n->ip[0], n->ip[1] ? " norm_topk" : ""); break;
    case LOOM_OP_ROPE:
        snprintf(buf, len, "heads=%d hd=%d %s rot=%d theta=%g pos_scale=%g%s", n->ip[0], n->ip[1],
                 n->ip[2] == LOOM_ROPE_NORM ? "norm" : "neox", n->ip[3], (double)n->fp[0], (double)n->fp[1],
                 n->n_src > 2 && n->src[2] >= 0 ? " factors" : "");
        break;
    case LOOM_OP_ATTENTION: {
        int o = snprintf(buf, len, "heads=%d kv_heads=%d hd=%d scale=%g", n->ip[0], n->ip[1], n->ip[2],
                         (double)n->fp[0]);
        if (o > 0 && (size_t)o < len && n->n_src > 4) o += snprintf(buf + o, len - (size_t)o, " block=%d", n->ip[3]);
        if (o > 0 && (size_t)o < len && n->ip[4]) o += snprintf(buf + o, len - (size_t)o, " window=%d", n->ip[4]);
        if (o > 0 && (size_t)o < len && n->ip[5]) o += snprintf(buf + o, len - (size_t)o, " ring");
        if (o > 0 && (size_t)o < len && n->fp[1] != 0) snprintf(buf + o, len - (size_t)o, " softcap=%g", (double)n->fp[1]);
        break;
    }
    case LOOM_OP_PERMUTE: {
        int o = snprintf(buf, len, "axes=");
        for (int d = 0; d < n->ndim && o > 0 && (size_t)o < len; d++)
            o += snprintf(buf + o, len - (size_t)o, d ? ",%d" : "%d", n->ip[d]);
        break;
    }
    default: break;
    }
}

/* ---- layers --------------------------------------------------------------------------------- */
/* "blk.N.*" weights and "cache_k.N" / "cache_v.N" states name their layer; other leaves none. */
static int name_layer(const char *name) {
    const char *p = NULL;
    if (!strncmp(name, "blk.", 4)) p = name + 4;
    else if (!strncmp(name, "cache_k.", 8) || !strncmp(name, "cache_v.", 8)) p = name + 8;
    if (!p || *p < '0' || *p > '9') return -1;
    return atoi(p);
}

/* An op belongs to the layer of a blk.N weight or cache it reads; failing that, ops reading a
 * global weight (embedding, final norm, LM head) belong to none (-1), and the rest inherit the
 * latest layer among their sources. Sources precede their readers, so one sweep suffices. */
static void node_layers(const loom_graph *g, int *layer) {
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (n->op == LOOM_OP_INPUT || n->op == LOOM_OP_WEIGHT || n->op == LOOM_OP_STATE) {
            layer[i] = name_layer(n->name);
            continue;
        }
        int own = -1, inherited = -1;
        bool global = false;
        for (int s = 0; s < n->n_src; s++) {
            int j = n->src[s];
            if (j < 0 || j >= i) continue;
            loom_op o = g->nodes[j].op;
            if (o == LOOM_OP_WEIGHT || o == LOOM_OP_STATE) {
                if (layer[j] >= 0) own = layer[j];
                else if (o == LOOM_OP_WEIGHT) global = true;
            } else if (layer[j] > inherited) {
                inherited = layer[j];
            }
        }
        layer[i] = own >= 0 ? own : global ? -1 : inherited;
    }
}

/* keep[i]: 1 shown, 0 collapsed before the range, 2 collapsed after it (counted when live). Nodes of layers lo..hi are
 * shown, with the inputs and global weights they read; what precedes the first shown node (or
 * belongs to an earlier layer) collapses "before", the rest "after". */
static void layer_filter(const loom_graph *g, int lo, int hi, const int *layer, unsigned char *keep) {
    int first = g->n;
    for (int i = 0; i < g->n; i++) {
        keep[i] = layer[i] >= lo && layer[i] <= hi;
        if (keep[i] && i < first) first = i;
    }
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (!keep[i] || n->op == LOOM_OP_INPUT || n->op == LOOM_OP_WEIGHT || n->op == LOOM_OP_STATE) continue;
        for (int s = 0; s < n->n_src; s++) {
            int j = n->src[s];
            if (j < 0 || keep[j] == 1) continue;
            loom_op o = g->nodes[j].op;
            if (o == LOOM_OP_INPUT || (o == LOOM_OP_WEIGHT && layer[j] < 0)) keep[j] = 1;
        }
    }
    for (int i = 0; i < g->n; i++)
        if (keep[i] != 1) keep[i] = (layer[i] >= 0 ? layer[i] < lo : i < first) ? 0 : 2;
}

typedef struct dump_view {
    const int *layer;          /* per node */
    const unsigned char *keep; /* NULL: every node shown */
    int lo, hi, n_before, n_after;
} dump_view;

static bool shown(const dump_view *v, int i) { return !v->keep || v->keep[i] == 1; }

/* Arena and naive sizes are the memory pass's (0 before it runs), the figures the plan holds. */
static void summary(const loom_graph *g, int *live, int *groups, size_t *arena, size_t *naive, size_t *wbytes) {
    *live = 0;
    *wbytes = 0;
    *arena = g->arena_size;
    *naive = g->naive_size;
    *groups = loom_graph_count_groups(g);
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (n->flags & LOOM_NODE_DEAD) continue;
        (*live)++;
        if (n->op == LOOM_OP_WEIGHT) *wbytes += loom_node_bytes(n);
    }
}

static void dump_text(const loom_graph *g, FILE *f, const char *title, const dump_view *v) {
    int live, groups;
    size_t arena, naive, wbytes;
    summary(g, &live, &groups, &arena, &naive, &wbytes);
    fprintf(f, "== %s: %d nodes declared, %d live, %d fused groups, ", title ? title : "graph", g->n, live, groups);
    if (naive) fprintf(f, "arena %zu bytes (naive %zu), weights %zu bytes\n", arena, naive, wbytes);
    else fprintf(f, "arena not planned yet, weights %zu bytes\n", wbytes);
    if (v->keep)
        fprintf(f, "   layers %d-%d only: %d nodes before and %d after collapsed\n", v->lo, v->hi, v->n_before,
                v->n_after);
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (!shown(v, i)) continue;
        char shape[96];
        loom_shape_str(n, shape, sizeof shape);
        fprintf(f, "%4d %-10s %-28s %-5s %-16s", i, loom_op_name(n->op), n->name, loom_dtype_name(n->type), shape);
        fprintf(f, " src(");
        for (int s = 0; s < n->n_src; s++) fprintf(f, s ? ",%d" : "%d", n->src[s]);
        fprintf(f, ")");
        char params[160];
        loom_params_str(n, params, sizeof params);
        if (params[0]) fprintf(f, " {%s}", params);
        if (n->flags & LOOM_NODE_DEAD) {
            if (n->replaced_by >= 0) fprintf(f, " DEAD -> %d", n->replaced_by);
            else fprintf(f, " DEAD");
        } else if (n->storage != LOOM_STORE_NONE) {
            fprintf(f, " %s@%zu+%zu", storage_name(n->storage), n->offset, n->nbytes);
            if (n->flags & LOOM_NODE_INPLACE) fprintf(f, " inplace");
            else if (n->alias >= 0) fprintf(f, " alias(%d)", n->alias);
        } else if (n->flags & LOOM_NODE_FOLDED) {
            fprintf(f, " folded");
        }
        if (n->group >= 0) fprintf(f, " group=%d", n->group);
        if (n->flags & LOOM_NODE_OUTPUT) fprintf(f, " OUTPUT");
        fprintf(f, "\n");
    }
    if (g->log_len) fprintf(f, "-- pass log --\n%s", g->log);
}

static void dump_json(const loom_graph *g, FILE *f, const char *title, const dump_view *v) {
    int live, groups;
    size_t arena, naive, wbytes;
    summary(g, &live, &groups, &arena, &naive, &wbytes);
    fprintf(f, "{\"schema\":\"loom-graph/1\",\"title\":");
    loom_json_str(f, title ? title : "graph");
    fprintf(f, ",\"summary\":{\"nodes\":%d,\"live\":%d,\"fused_groups\":%d,\"arena_bytes\":%zu,"
               "\"naive_bytes\":%zu,\"weight_bytes\":%zu},",
            g->n, live, groups, arena, naive, wbytes);
    if (v->keep)
        fprintf(f, "\"layers\":[%d,%d],\"collapsed\":{\"before\":%d,\"after\":%d},", v->lo, v->hi, v->n_before,
                v->n_after);
    fprintf(f, "\"nodes\":[");
    bool first = true;
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (!shown(v, i)) continue;
        fprintf(f, "%s{\"id\":%d,\"op\":\"%s\",\"name\":", first ? "" : ",", i, loom_op_name(n->op));
        first = false;
        loom_json_str(f, n->name);
        fprintf(f, ",\"dtype\":\"%s\",\"shape\":[", loom_dtype_name(n->type));
        for (int d = 0; d < n->ndim; d++) fprintf(f, d ? ",%lld" : "%lld", (long long)n->ne[d]);
        fprintf(f, "],\"src\":[");
        for (int s = 0; s < n->n_src; s++) fprintf(f, s ? ",%d" : "%d", n->src[s]);
        char params[160];
        loom_params_str(n, params, sizeof params);
        fprintf(f, "],\"params\":");
        loom_json_str(f, params);
        fprintf(f, ",\"live\":%s,\"output\":%s,\"replaced_by\":%d,\"group\":%d,\"storage\":\"%s\","
                   "\"offset\":%zu,\"bytes\":%zu,\"inplace\":%s,\"folded\":%s,\"alias\":%d,\"layer\":%d}",
                (n->flags & LOOM_NODE_DEAD) ? "false" : "true", (n->flags & LOOM_NODE_OUTPUT) ? "true" : "false",
                n->replaced_by, n->group, storage_name(n->storage), n->offset, n->nbytes,
                (n->flags & LOOM_NODE_INPLACE) ? "true" : "false", (n->flags & LOOM_NODE_FOLDED) ? "true" : "false",
                n->alias, v->layer[i]);
    }
    fprintf(f, "],\"log\":");
    loom_json_str(f, g->log ? g->log : "");
    fprintf(f, "}\n");
}

static void dump_dot(const loom_graph *g, FILE *f, const char *title, const dump_view *v) {
    fprintf(f, "digraph loom {\n  label=");
    loom_json_str(f, title ? title : "graph");
    fprintf(f, ";\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    int max_group = -1;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].group > max_group) max_group = g->nodes[i].group;
    for (int grp = 0; grp <= max_group; grp++) {
        bool any = false;
        for (int i = 0; i < g->n; i++) {
            const loom_node *n = &g->nodes[i];
            if (n->group != grp || (n->flags & LOOM_NODE_DEAD) || !shown(v, i)) continue;
            if (!any) fprintf(f, "  subgraph cluster_fused_%d { style=dashed; label=\"fused %d\";\n", grp, grp);
            any = true;
            fprintf(f, "    n%d;\n", i);
        }
        if (any) fprintf(f, "  }\n");
    }
    unsigned char *to_after = v->keep ? calloc((size_t)g->n + 1, 1) : NULL;
    if (v->keep) {
        /* the collapsed rest: one box before the range and one after, each edge drawn once */
        if (v->n_before)
            fprintf(f, "  before [shape=folder, label=\"%d nodes before layer %d\"];\n", v->n_before, v->lo);
        if (v->n_after) fprintf(f, "  after [shape=folder, label=\"%d nodes after layer %d\"];\n", v->n_after, v->hi);
    }
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (n->flags & LOOM_NODE_DEAD) continue;
        if (!shown(v, i)) {
            /* a collapsed node after the range reading a shown one: one edge into "after" per shown node */
            for (int s = 0; v->keep[i] == 2 && s < n->n_src; s++) {
                int j = n->src[s];
                if (!shown(v, j) || (to_after && to_after[j])) continue;
                if (to_after) to_after[j] = 1;
                fprintf(f, "  n%d -> after [style=dashed];\n", j);
            }
            continue;
        }
        char shape[96];
        loom_shape_str(n, shape, sizeof shape);
        const char *style = n->op == LOOM_OP_WEIGHT ? ", style=filled, fillcolor=\"#e8e8e8\"" :
                            (n->flags & LOOM_NODE_OUTPUT) ? ", style=bold" :
                            (n->flags & LOOM_NODE_FOLDED) ? ", style=dashed" : "";
        fprintf(f, "  n%d [label=\"%s\\n", i, loom_op_name(n->op));
        for (const char *s = n->name; *s; s++)
            if (*s != '"' && *s != '\\') fputc(*s, f);
        fprintf(f, "\\n%s %s\"%s];\n", loom_dtype_name(n->type), shape, style);
        bool from_before = false, from_after = false;
        for (int s = 0; s < n->n_src; s++) {
            int j = n->src[s];
            if (shown(v, j)) fprintf(f, "  n%d -> n%d;\n", j, i);
            else if (v->keep[j] == 0) from_before = true;
            else from_after = true;
        }
        if (from_before) fprintf(f, "  before -> n%d [style=dashed];\n", i);
        if (from_after) fprintf(f, "  after -> n%d [style=dashed];\n", i);
    }
    free(to_after);
    fprintf(f, "}\n");
}

void loom_graph_dump_layers(const loom_graph *g, FILE *f, loom_dump_format fmt, const char *title, const int *layers) {
    int *layer = malloc((size_t)(g->n ? g->n : 1) * sizeof *layer);
    unsigned char *keep = layers ? malloc((size_t)(g->n ? g->n : 1)) : NULL;
    if (!layer || (layers && !keep)) {
        free(layer);
        free(keep);
        fprintf(f, "(out of memory dumping the graph)\n");
        return;
    }
    node_layers(g, layer);
    dump_view v = {.layer = layer, .keep = keep, .lo = layers ? layers[0] : 0, .hi = layers ? layers[1] : 0};
    if (keep) {
        layer_filter(g, v.lo, v.hi, layer, keep);
        for (int i = 0; i < g->n; i++) {
            if (g->nodes[i].flags & LOOM_NODE_DEAD) continue;
            v.n_before += keep[i] == 0;
            v.n_after += keep[i] == 2;
        }
    }
    switch (fmt) {
    case LOOM_DUMP_JSON: dump_json(g, f, title, &v); break;
    case LOOM_DUMP_DOT: dump_dot(g, f, title, &v); break;
    default: dump_text(g, f, title, &v); break;
    }
    free(layer);
    free(keep);
}

void loom_graph_dump(const loom_graph *g, FILE *f, loom_dump_format fmt, const char *title) {
    loom_graph_dump_layers(g, f, fmt, title, NULL);
}
