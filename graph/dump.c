/* Graph dumps: text for people, DOT for Graphviz, JSON for tools. The JSON schema is documented in
 * docs/graph-dump.md; keep the two in step. */
#include "graph.h"

#include "util.h"

static const char *storage_name(loom_storage s) {
    switch (s) {
    case LOOM_STORE_ARENA: return "arena";
    case LOOM_STORE_WEIGHT: return "weight";
    case LOOM_STORE_STATE: return "state";
    default: return "none";
    }
}

static void shape_str(const loom_node *n, char *buf, size_t len) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int d = 0; d < n->ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, d ? ",%lld" : "%lld", (long long)n->ne[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void summary(const loom_graph *g, int *live, int *groups, size_t *arena, size_t *naive, size_t *wbytes) {
    *live = *groups = 0;
    *arena = *naive = *wbytes = 0;
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (n->flags & LOOM_NODE_DEAD) continue;
        (*live)++;
        if (n->n_fused) (*groups)++;
        if (n->op == LOOM_OP_WEIGHT) *wbytes += loom_node_bytes(n);
        if (n->storage == LOOM_STORE_ARENA && n->alias < 0) {
            size_t end = n->offset + n->nbytes;
            if (end > *arena) *arena = end;
        }
        if (n->op != LOOM_OP_WEIGHT && n->op != LOOM_OP_STATE && n->op != LOOM_OP_VIEW &&
            n->op != LOOM_OP_KV_STORE)
            *naive += loom_node_bytes(n);
    }
}

static void dump_text(const loom_graph *g, FILE *f, const char *title) {
    int live, groups;
    size_t arena, naive, wbytes;
    summary(g, &live, &groups, &arena, &naive, &wbytes);
    fprintf(f, "== %s: %d nodes declared, %d live, %d fused groups, arena %zu bytes (naive %zu), weights %zu bytes\n",
            title ? title : "graph", g->n, live, groups, arena, naive, wbytes);
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        char shape[96];
        shape_str(n, shape, sizeof shape);
        fprintf(f, "%4d %-10s %-28s %-5s %-16s", i, loom_op_name(n->op), n->name, loom_dtype_name(n->type), shape);
        fprintf(f, " src(");
        for (int s = 0; s < n->n_src; s++) fprintf(f, s ? ",%d" : "%d", n->src[s]);
        fprintf(f, ")");
        if (n->flags & LOOM_NODE_DEAD) {
            if (n->replaced_by >= 0) fprintf(f, " DEAD -> %d", n->replaced_by);
            else fprintf(f, " DEAD");
        } else if (n->storage != LOOM_STORE_NONE) {
            fprintf(f, " %s@%zu+%zu", storage_name(n->storage), n->offset, n->nbytes);
            if (n->flags & LOOM_NODE_INPLACE) fprintf(f, " inplace");
            else if (n->alias >= 0) fprintf(f, " alias(%d)", n->alias);
        }
        if (n->group >= 0) fprintf(f, " group=%d", n->group);
        if (n->flags & LOOM_NODE_OUTPUT) fprintf(f, " OUTPUT");
        fprintf(f, "\n");
    }
    if (g->log_len) fprintf(f, "-- pass log --\n%s", g->log);
}

static void dump_json(const loom_graph *g, FILE *f, const char *title) {
    int live, groups;
    size_t arena, naive, wbytes;
    summary(g, &live, &groups, &arena, &naive, &wbytes);
    fprintf(f, "{\"schema\":\"loom-graph/1\",\"title\":");
    json_str(f, title ? title : "graph");
    fprintf(f, ",\"summary\":{\"nodes\":%d,\"live\":%d,\"fused_groups\":%d,\"arena_bytes\":%zu,"
               "\"naive_bytes\":%zu,\"weight_bytes\":%zu},\"nodes\":[",
            g->n, live, groups, arena, naive, wbytes);
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        fprintf(f, "%s{\"id\":%d,\"op\":\"%s\",\"name\":", i ? "," : "", i, loom_op_name(n->op));
        json_str(f, n->name);
        fprintf(f, ",\"dtype\":\"%s\",\"shape\":[", loom_dtype_name(n->type));
        for (int d = 0; d < n->ndim; d++) fprintf(f, d ? ",%lld" : "%lld", (long long)n->ne[d]);
        fprintf(f, "],\"src\":[");
        for (int s = 0; s < n->n_src; s++) fprintf(f, s ? ",%d" : "%d", n->src[s]);
        fprintf(f, "],\"live\":%s,\"output\":%s,\"replaced_by\":%d,\"group\":%d,\"storage\":\"%s\","
                   "\"offset\":%zu,\"bytes\":%zu,\"inplace\":%s,\"alias\":%d}",
                (n->flags & LOOM_NODE_DEAD) ? "false" : "true", (n->flags & LOOM_NODE_OUTPUT) ? "true" : "false",
                n->replaced_by, n->group, storage_name(n->storage), n->offset, n->nbytes,
                (n->flags & LOOM_NODE_INPLACE) ? "true" : "false", n->alias);
    }
    fprintf(f, "],\"log\":");
    json_str(f, g->log ? g->log : "");
    fprintf(f, "}\n");
}

static void dump_dot(const loom_graph *g, FILE *f, const char *title) {
    fprintf(f, "digraph loom {\n  label=");
    json_str(f, title ? title : "graph");
    fprintf(f, ";\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    int max_group = -1;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].group > max_group) max_group = g->nodes[i].group;
    for (int grp = 0; grp <= max_group; grp++) {
        bool any = false;
        for (int i = 0; i < g->n; i++) {
            const loom_node *n = &g->nodes[i];
            if (n->group != grp || (n->flags & LOOM_NODE_DEAD)) continue;
            if (!any) fprintf(f, "  subgraph cluster_fused_%d { style=dashed; label=\"fused %d\";\n", grp, grp);
            any = true;
            fprintf(f, "    n%d;\n", i);
        }
        if (any) fprintf(f, "  }\n");
    }
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (n->flags & LOOM_NODE_DEAD) continue;
        char shape[96];
        shape_str(n, shape, sizeof shape);
        const char *style = n->op == LOOM_OP_WEIGHT ? ", style=filled, fillcolor=\"#e8e8e8\"" :
                            (n->flags & LOOM_NODE_OUTPUT) ? ", style=bold" : "";
        fprintf(f, "  n%d [label=\"%s\\n", i, loom_op_name(n->op));
        for (const char *s = n->name; *s; s++)
            if (*s != '"' && *s != '\\') fputc(*s, f);
        fprintf(f, "\\n%s %s\"%s];\n", loom_dtype_name(n->type), shape, style);
        for (int s = 0; s < n->n_src; s++) fprintf(f, "  n%d -> n%d;\n", n->src[s], i);
    }
    fprintf(f, "}\n");
}

void loom_graph_dump(const loom_graph *g, FILE *f, loom_dump_format fmt, const char *title) {
    switch (fmt) {
    case LOOM_DUMP_JSON: dump_json(g, f, title); break;
    case LOOM_DUMP_DOT: dump_dot(g, f, title); break;
    default: dump_text(g, f, title); break;
    }
}
