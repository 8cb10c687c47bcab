/*
 * Best contour-box IoU at every CAM threshold of a score map: wsolevaluation's MaxBoxAccV2 boxes,
 * without contour tracing.
 *
 * wsolevaluation normalizes each map, converts it to uint8, thresholds it at every CAM threshold and
 * takes the bounding rectangle of every contour cv2.findContours(RETR_TREE) returns. Those
 * rectangles are exactly
 *   - the bounding box of every 8-connected foreground component (its outer border), and
 *   - the bounding box, grown by one pixel on each side, of every 4-connected background component
 *     that does not touch the image border (a hole: its border runs through the foreground pixels
 *     around it),
 * each stored as [x0, y0, min(x1 + 1, W - 1), min(y1 + 1, H - 1)] (x1, y1 the last contour pixel).
 * tests/test_metrics.py checks this against OpenCV on random images.
 *
 * So per threshold we only need connected components and their boxes, not contours. The map is
 * read once, row by row. For each row, its pixels are binned by level into bit words; walking the
 * levels from high to low, the row's foreground at each level is the OR of the bins so far, and its
 * runs (from the bit words, so a level costs in proportion to its runs, not its pixels) are matched
 * against the same level's runs of the row above. A run takes the component of the runs it touches
 * (merging them if several, union-find over components, not runs) or starts one; the background
 * between two runs of a row is matched the same way, 4-connected, to find holes. Components keep
 * their box as they grow. Two cases take most rows and levels and get short paths: runs that each lie
 * under the run of the same index above ("aligned"), and levels at which a row and the row above are
 * all foreground (no bits needed). A cut that no pixel value sits just above shares the next cut's
 * level.
 * The IoU arithmetic is wsolevaluation's (float64, inclusive pixel areas), so every value is
 * bit-identical to the reference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER)
#include <intrin.h>
static inline int32_t lowest_bit(uint64_t m) {
    unsigned long i;
    _BitScanForward64(&i, m);
    return (int32_t)i;
}
static inline int32_t highest_bit(uint64_t m) {
    unsigned long i;
    _BitScanReverse64(&i, m);
    return (int32_t)i;
}
#else
static inline int32_t lowest_bit(uint64_t m) { return __builtin_ctzll(m); }
static inline int32_t highest_bit(uint64_t m) { return 63 - __builtin_clzll(m); }
#endif

/* the normalization loops also get an AVX2 build where the loader can pick it at run time (ifunc) */
#if defined(__has_attribute) && defined(__x86_64__) && defined(__GLIBC__)
#if __has_attribute(target_clones)
#define WITH_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef WITH_AVX2_CLONE
#define WITH_AVX2_CLONE
#endif

typedef struct {
    int32_t x0, y0, x1, y1;
} Box;

/* a run [start, end] of the current or previous row at one level, and its component */
typedef struct {
    uint16_t start, end;
    int32_t comp;
} Seg;

/* a connected component at one level (union-find over components; the root holds the data) */
typedef struct {
    int32_t parent;
    int32_t full; /* foreground: 2 x 2 windows of its pixels (a lower bound of its contour's area) */
    uint16_t x0, x1, y0, y1;
    uint8_t level;
    uint8_t border; /* background: reaches the image border */
} Comp;

typedef struct {
    Comp *comps;
    size_t n, cap;
} CompList;

/* per level, the last row that had foreground there and its number of runs (its gaps: one fewer) */
typedef struct {
    int32_t row, n_fg;
} LevelRow;

typedef struct {
    int32_t width, height, words; /* words: 64-bit words per bit-packed row */
    int32_t seg_cap;              /* runs per row at most */
    uint64_t *bits;               /* pixels of the current row per level, (levels + 1) x words */
    uint64_t *cur;                /* the current row's foreground at the current level */
    uint8_t *border;              /* per gap of the current row: reaches the border */
    Seg *segs;                    /* [level][row parity][runs, gaps][seg_cap] */
    CompList fg, holes;
    int failed; /* out of memory */
} Workspace;

/* the runs of a row at one level; its gaps follow them at + seg_cap */
static inline Seg *runs_at(const Workspace *w, int32_t level, int32_t row) {
    return w->segs + ((size_t)level * 4 + (size_t)(row & 1) * 2) * (size_t)w->seg_cap;
}

/* room for extra more components, so the row loops need no checks */
static int reserve(Workspace *w, CompList *list, size_t extra) {
    if (list->n + extra <= list->cap) return 1;
    size_t cap = list->cap ? 2 * list->cap : 4096;
    while (cap < list->n + extra) cap *= 2;
    Comp *grown = realloc(list->comps, sizeof(Comp) * cap);
    if (!grown) {
        w->failed = 1;
        return 0;
    }
    list->comps = grown;
    list->cap = cap;
    return 1;
}

static int32_t new_comp(CompList *list, int32_t start, int32_t end, int32_t row, int32_t level, int border) {
    int32_t id = (int32_t)list->n++;
    list->comps[id] = (Comp){id, 0, (uint16_t)start, (uint16_t)end, (uint16_t)row, (uint16_t)row,
                             (uint8_t)level, (uint8_t)border};
    return id;
}

static int32_t find_root(Comp *comps, int32_t a) {
    while (comps[a].parent != a) {
        comps[a].parent = comps[comps[a].parent].parent;
        a = comps[a].parent;
    }
    return a;
}

/* merge two roots (the older one stays root); returns the root */
static int32_t unite_roots(Comp *comps, int32_t a, int32_t b) {
    if (a == b) return a;
    if (a > b) {
        int32_t t = a;
        a = b;
        b = t;
    }
    Comp *root = &comps[a], *child = &comps[b];
    child->parent = a;
    root->x0 = child->x0 < root->x0 ? child->x0 : root->x0;
    root->x1 = child->x1 > root->x1 ? child->x1 : root->x1;
    root->y0 = child->y0 < root->y0 ? child->y0 : root->y0;
    root->y1 = child->y1 > root->y1 ? child->y1 : root->y1;
    root->border |= child->border;
    root->full += child->full;
    return a;
}

/* columns two runs of consecutive rows share, less one: the 2 x 2 windows between them */
static inline int32_t shared_windows(const Seg *a, int32_t s, int32_t e) {
    int32_t lo = a->start > s ? a->start : s, hi = a->end < e ? a->end : e;
    return hi > lo ? hi - lo : 0;
}

/* a run [s, e] of this row joins a component (root) */
static inline void grow(Comp *c, int32_t s, int32_t e, int32_t row, int32_t windows, uint8_t border) {
    c->x0 = s < c->x0 ? (uint16_t)s : c->x0;
    c->x1 = e > c->x1 ? (uint16_t)e : c->x1;
    c->y1 = (uint16_t)row;
    c->full += windows;
    c->border |= border;
}

/*
 * Give every run of this row (here) a component: the one of the runs of the row above it touches
 * (8-adjacency: slack 1; 4-adjacency: slack 0), merged if several, else a new one. For foreground,
 * also count the 2 x 2 windows shared with the row above.
 */
static void match_rows(CompList *list, const Seg *above, int32_t n_above, Seg *here, int32_t n, int32_t row,
                       int32_t level, int32_t slack, const uint8_t *border) {
    Comp *comps = list->comps;
    int32_t i = 0;
    for (int32_t j = 0; j < n; j++) {
        int32_t s = here[j].start, e = here[j].end, comp = -1, windows = 0;
        while (i < n_above && above[i].end + slack < s) i++;
        for (int32_t t = i; t < n_above && above[t].start <= e + slack; t++) {
            int32_t r = find_root(comps, above[t].comp);
            comp = comp < 0 ? r : unite_roots(comps, comp, r);
            windows += shared_windows(&above[t], s, e);
        }
        if (comp < 0)
            comp = new_comp(list, s, e, row, level, border ? border[j] : 0);
        else
            grow(&comps[comp], s, e, row, windows, border ? border[j] : 0);
        here[j].comp = comp;
    }
}

/*
 * Whether each run of this row touches (8-adjacent) the run of the same index above and no other:
 * then each gap between runs overlaps (4-adjacent) at most the gap of the same index above, and
 * neither reaches the border sideways (the outer runs overlap).
 */
static inline int aligned(const Seg *here, const Seg *above, int32_t n, int32_t n_above) {
    if (n != n_above) return 0;
    for (int32_t j = 0; j < n; j++) {
        if (here[j].start > above[j].end + 1 || above[j].start > here[j].end + 1) return 0;
        if (j + 1 < n && (here[j].end + 1 >= above[j + 1].start || above[j].end + 1 >= here[j + 1].start)) return 0;
    }
    return 1;
}

/* max over the GT boxes of wsolevaluation's inclusive IoU (float64, same operation order) */
static double best_iou(const Box *b, const double *gt, Py_ssize_t n_gt) {
    double best = 0.0;
    double bx0 = b->x0, by0 = b->y0, bx1 = b->x1, by1 = b->y1;
    double area_b = (bx1 - bx0 + 1.0) * (by1 - by0 + 1.0);
    for (Py_ssize_t g = 0; g < n_gt; g++) {
        double gx0 = gt[4 * g], gy0 = gt[4 * g + 1], gx1 = gt[4 * g + 2], gy1 = gt[4 * g + 3];
        double iw = (bx1 < gx1 ? bx1 : gx1) - (bx0 > gx0 ? bx0 : gx0) + 1.0;
        double ih = (by1 < gy1 ? by1 : gy1) - (by0 > gy0 ? by0 : gy0) + 1.0;
        double inter = iw > 0.0 ? iw : 0.0;
        inter *= ih > 0.0 ? ih : 0.0;
        double denom = area_b + (gx1 - gx0 + 1.0) * (gy1 - gy0 + 1.0) - inter;
        double iou = denom > 0.0 ? inter / denom : 0.0;
        if (iou > best) best = iou;
    }
    return best;
}

/* foreground runs of a bit-packed row whose words outside [lo, hi] are zero; returns their number */
static int32_t row_runs(const uint64_t *bits, int32_t lo, int32_t hi, Seg *runs) {
    /* most rows are one run: its first word ends in ones, its last starts with ones, all ones between */
    uint64_t first = bits[lo], last = bits[hi];
    int one_run = lo == hi ? ((first + (first & -first)) & first) == 0
                           : first + (first & -first) == 0 && (last & (last + 1)) == 0;
    for (int32_t i = lo + 1; i < hi && one_run; i++) one_run = bits[i] == ~0ULL;
    if (one_run) {
        runs[0].start = (uint16_t)(lo * 64 + lowest_bit(first));
        runs[0].end = (uint16_t)(hi * 64 + highest_bit(last));
        return 1;
    }
    int32_t n_start = 0, n_end = 0;
    uint64_t carry = 0; /* last bit of the previous word */
    for (int32_t i = lo; i <= hi; i++) {
        uint64_t b = bits[i], next = i < hi ? bits[i + 1] & 1 : 0;
        uint64_t starts = b & ~((b << 1) | carry), ends = b & ~((b >> 1) | (next << 63));
        carry = b >> 63;
        for (; starts; starts &= starts - 1) runs[n_start++].start = (uint16_t)(i * 64 + lowest_bit(starts));
        for (; ends; ends &= ends - 1) runs[n_end++].end = (uint16_t)(i * 64 + lowest_bit(ends));
    }
    return n_start;
}

/* what one level's contours give: V2's best IoU, and what V1 (largest contour) can be decided from */
typedef struct {
    double best;
    int64_t count;
    int64_t hit_area_min;  /* a lower bound of the largest contour area among boxes with IoU >= 0.5 */
    int64_t miss_area_max; /* an upper bound of every contour area among the other boxes */
    int hit, miss;
} Level;

/*
 * Fold every component into its level: best IoU, contour count, and bounds of its contour's
 * polygon area for V1. Holes (hole = 1) count only off the border, with the box grown by one pixel
 * as the hole's contour has it. Area bounds: a contour's polygon runs through pixel centres, so it
 * lies in its box less one pixel per side, and an outer contour encloses every 2 x 2 window of its
 * component's pixels (holes get no lower bound).
 */
static void score_components(const Workspace *w, const CompList *list, int hole, const double *gt,
                             Py_ssize_t n_gt, Level *levels) {
    for (size_t i = 0; i < list->n; i++) {
        const Comp *c = &list->comps[i];
        if (c->parent != (int32_t)i || (hole && c->border)) continue;
        Box b = {c->x0 - hole, c->y0 - hole, c->x1 + hole + 1, c->y1 + hole + 1};
        b.x1 = b.x1 < w->width - 1 ? b.x1 : w->width - 1;
        b.y1 = b.y1 < w->height - 1 ? b.y1 : w->height - 1;
        double iou = best_iou(&b, gt, n_gt);
        Level *level = &levels[c->level];
        if (iou > level->best) level->best = iou;
        level->count++;
        if (iou >= 0.5) {
            int64_t area_min = hole ? 0 : c->full;
            level->hit = 1;
            if (area_min > level->hit_area_min) level->hit_area_min = area_min;
        } else {
            int64_t area_max = (int64_t)(c->x1 - c->x0 + 2 * hole) * (c->y1 - c->y0 + 2 * hole);
            level->miss = 1;
            if (area_max > level->miss_area_max) level->miss_area_max = area_max;
        }
    }
}

/* reference normalization + uint8: (m - min) / (max - min) * 255 truncated, float32; NaN or flat -> 0.
 * Returns the largest value. Loops kept simple enough to vectorize. */
WITH_AVX2_CLONE static uint8_t scoremap_uint8(const float *map, Py_ssize_t pixels, uint8_t *out) {
    /* min / max / NaN on integer keys (IEEE order for non-NaN floats), which compilers vectorize */
    int32_t key_lo = INT32_MAX, key_hi = INT32_MIN, magnitude = 0;
    for (Py_ssize_t i = 0; i < pixels; i++) {
        int32_t b;
        memcpy(&b, &map[i], sizeof b);
        int32_t key = b ^ ((b >> 31) & INT32_MAX), m = b & INT32_MAX;
        key_lo = key < key_lo ? key : key_lo;
        key_hi = key > key_hi ? key : key_hi;
        magnitude = m > magnitude ? m : magnitude;
    }
    int nan = magnitude > 0x7f800000;
    int32_t lo_bits = key_lo ^ ((key_lo >> 31) & INT32_MAX), hi_bits = key_hi ^ ((key_hi >> 31) & INT32_MAX);
    float lo, hi;
    memcpy(&lo, &lo_bits, sizeof lo);
    memcpy(&hi, &hi_bits, sizeof hi);
    float range = hi - lo;
    if (nan || !(range > 0.0f)) {
        memset(out, 0, (size_t)pixels);
        return 0;
    }
    uint8_t top = 255; /* the maximum maps to (hi - lo) / (hi - lo) * 255 = 255 exactly */
    if (isfinite(range)) {
        for (Py_ssize_t i = 0; i < pixels; i++) out[i] = (uint8_t)((map[i] - lo) / range * 255.0f);
    } else { /* infinite values: inf / inf is NaN, which the reference's uint8 cast turns into 0 */
        top = 0;
        for (Py_ssize_t i = 0; i < pixels; i++) {
            float v = (map[i] - lo) / range * 255.0f;
            out[i] = v == v ? (uint8_t)v : 0;
            top = out[i] > top ? out[i] : top;
        }
    }
    return top;
}

/* the row above's holes candidates at this level reach the border (through this row's background) */
static void gaps_to_border(Workspace *w, const Seg *gaps, int32_t n_gaps, int32_t lead, int32_t trail) {
    for (int32_t i = 0; i < n_gaps; i++)
        if (gaps[i].start < lead || gaps[i].end > trail) w->holes.comps[find_root(w->holes.comps, gaps[i].comp)].border = 1;
}

/*
 * One row at every level below top_level (its highest): its runs, matched with the row above's.
 * Below full_below, both rows are all foreground, which needs no bits: one run under one run.
 */
static void scan_row(Workspace *w, int32_t y, int32_t top_level, int32_t full_below, LevelRow *prev) {
    int32_t words = w->words, width = w->width, last_row = w->height - 1;
    size_t most = (size_t)top_level * (size_t)w->seg_cap;
    if (!reserve(w, &w->fg, most) || !reserve(w, &w->holes, most)) return;
    uint64_t *cur = w->cur;
    uint8_t *border = w->border;
    int32_t lo_word = words, hi_word = -1; /* cur's nonzero words */
    memset(cur, 0, sizeof(uint64_t) * (size_t)words);
    int32_t cap = w->seg_cap;
    for (int32_t q = top_level; q > full_below; q--) {
        /* the row's pixels of this level join; their bins are cleared for the next row */
        uint64_t *add = w->bits + (size_t)q * (size_t)words;
        for (int32_t i = 0; i < words; i++) { /* no branch on the bins: which are empty is unpredictable */
            uint64_t bin = add[i];
            int32_t some = bin != 0;
            cur[i] |= bin;
            add[i] = 0;
            lo_word = some && i < lo_word ? i : lo_word;
            hi_word = some && i > hi_word ? i : hi_word;
        }
        int32_t k = q - 1;
        LevelRow *p = &prev[k];
        int32_t n_above = p->row == y - 1 ? p->n_fg : 0, n_gaps_above = n_above ? n_above - 1 : 0;
        const Seg *fg_above = runs_at(w, k, y - 1), *gaps_above = fg_above + cap;
        Seg *fg = runs_at(w, k, y), *gaps = fg + cap;
        int32_t n = row_runs(cur, lo_word, hi_word, fg);
        *p = (LevelRow){y, n};
        if (aligned(fg, fg_above, n, n_above)) {
            /* the common case: each run and gap joins the one under which it lies, and touches no border
             * the row above's background does not (a gap only on the last row) */
            for (int32_t j = 0; j < n; j++) {
                int32_t comp = find_root(w->fg.comps, fg_above[j].comp);
                grow(&w->fg.comps[comp], fg[j].start, fg[j].end, y, shared_windows(&fg_above[j], fg[j].start, fg[j].end),
                     0);
                fg[j].comp = comp;
            }
            for (int32_t j = 0; j + 1 < n; j++) {
                int32_t s = fg[j].end + 1, e = fg[j + 1].start - 1, comp;
                if (s <= gaps_above[j].end && gaps_above[j].start <= e) {
                    comp = find_root(w->holes.comps, gaps_above[j].comp);
                    grow(&w->holes.comps[comp], s, e, y, 0, y == last_row);
                } else {
                    comp = new_comp(&w->holes, s, e, y, k, y == last_row);
                }
                gaps[j] = (Seg){(uint16_t)s, (uint16_t)e, comp};
            }
            continue;
        }
        match_rows(&w->fg, fg_above, n_above, fg, n, y, k, 1, NULL);
        /* background between two runs of this row; it reaches the border through the row above if
         * that row's background left of its first run or right of its last run touches it */
        int32_t lead = n_above ? fg_above[0].start : width, trail = n_above ? fg_above[n_above - 1].end : -1;
        int32_t edge = y == 0 || y == last_row || !n_above;
        for (int32_t i = 1; i < n; i++) {
            gaps[i - 1].start = (uint16_t)(fg[i - 1].end + 1);
            gaps[i - 1].end = (uint16_t)(fg[i].start - 1);
            border[i - 1] = (uint8_t)(edge || gaps[i - 1].start < lead || gaps[i - 1].end > trail);
        }
        if (n_gaps_above) gaps_to_border(w, gaps_above, n_gaps_above, fg[0].start, fg[n - 1].end);
        if (n > 1) match_rows(&w->holes, gaps_above, n_gaps_above, gaps, n - 1, y, k, 0, border);
    }
    memset(w->bits + words, 0, sizeof(uint64_t) * (size_t)words * (size_t)full_below); /* unread bins */
    for (int32_t k = full_below - 1; k >= 0; k--) {
        int32_t comp = find_root(w->fg.comps, runs_at(w, k, y - 1)->comp);
        grow(&w->fg.comps[comp], 0, width - 1, y, width - 1, 0);
        *runs_at(w, k, y) = (Seg){0, (uint16_t)(width - 1), comp};
        prev[k] = (LevelRow){y, 1};
    }
}

/*
 * seen[v]: whether value v occurs, or may (v <= top). Finding the values takes a pass over the map,
 * which pays off for maps of few values (nearest-neighbour upsampled, quantized), whose empty levels
 * the scan then skips, and not for smooth maps: when a sample of rows already finds most levels
 * occupied, every value up to the top is taken as seen. An empty level taken as occupied costs a
 * little time, never correctness.
 */
/* whether a seen value lies above cut k and at or below the next cut (255 after the last) */
static int value_above_cut(const uint8_t seen[256], const int32_t *cuts, int32_t n_cuts, int32_t k) {
    int32_t next = k + 1 < n_cuts ? cuts[k + 1] : 255;
    for (int32_t v = cuts[k] + 1; v <= next; v++)
        if (seen[v]) return 1;
    return 0;
}

static void values_seen(const uint8_t *u8, int32_t width, int32_t height, const int32_t *cuts, int32_t n_cuts,
                        uint8_t top, uint8_t seen[256]) {
    memset(seen, 0, 256);
    for (int32_t y = 0, step = height / 16 > 1 ? height / 16 : 1; y < height; y += step)
        for (int32_t x = 0; x < width; x++) seen[u8[(Py_ssize_t)y * width + x]] = 1;
    int32_t below_top = 0, occupied = 0; /* cuts under the top, and those with a sampled value above */
    for (int32_t k = 0; k < n_cuts && cuts[k] < top; k++) {
        below_top++;
        occupied += value_above_cut(seen, cuts, n_cuts, k);
    }
    if (4 * occupied >= 3 * below_top) {
        memset(seen, 1, (size_t)top + 1);
    } else {
        for (Py_ssize_t i = 0; i < (Py_ssize_t)width * height; i++) seen[u8[i]] = 1;
    }
}

static void score_map(Workspace *w, const uint8_t *u8, uint8_t top, const double *thresholds,
                      Py_ssize_t n_thr, const double *gt, Py_ssize_t n_gt, double *out_best, int64_t *out_count,
                      int8_t *out_v1) {
    int32_t width = w->width, height = w->height, words = w->words;
    /* the distinct cuts, int(t * max) as cv2.threshold receives them; non-decreasing in t */
    int32_t cuts[256], n_cuts = 0, level_of[256]; /* level_of: by cut value */
    for (int v = 0; v < 256; v++) level_of[v] = -1;
    for (Py_ssize_t i = 0; i < n_thr; i++) {
        int32_t c = (int32_t)(int64_t)(thresholds[i] * (double)top);
        if (level_of[c] < 0) {
            level_of[c] = 0;
            cuts[n_cuts++] = c;
        }
    }
    /* a level per cut, except that a cut no value sits just above has the foreground of the next cut
     * and shares its level (the last cut is always kept: the top value is above it, or no value is) */
    uint8_t seen[256], keep[256];
    values_seen(u8, width, height, cuts, n_cuts, top, seen);
    int32_t kept[256], n_levels = 0;
    for (int32_t k = 0; k < n_cuts; k++) {
        keep[k] = (uint8_t)(cuts[k] >= top || value_above_cut(seen, cuts, n_cuts, k));
        if (keep[k]) kept[n_levels++] = cuts[k];
    }
    for (int32_t k = n_cuts - 1, level = n_levels; k >= 0; k--) {
        level -= keep[k];
        level_of[cuts[k]] = level;
    }
    /* level of a pixel value: number of kept cuts below it (foreground at level k iff k < lut[v]) */
    uint8_t lut[256];
    for (int32_t v = 0, k = 0; v < 256; v++) {
        while (k < n_levels && kept[k] < v) k++;
        lut[v] = (uint8_t)k;
    }
    int32_t top_level = lut[top]; /* levels from here on have no foreground */
    LevelRow prev[256];
    for (int32_t k = 0; k < n_levels; k++) prev[k].row = -2;
    w->fg.n = w->holes.n = 0;
    for (int32_t y = 0, hi_above = 0, lo_above = 0; y < height && !w->failed; y++) {
        /* bin the row's pixels by level: one stream per 64-pixel word, interleaved (neighbours of
         * one level share a word, and back-to-back updates of one word would wait on each other) */
        const uint8_t *row = u8 + (Py_ssize_t)y * width;
        uint64_t *bits = w->bits;
        int32_t whole = width / 64;
        for (int32_t j = 0; j < 64 && whole; j++)
            for (int32_t i = 0; i < whole; i++) {
                int32_t q = lut[row[i * 64 + j]];
                bits[q * words + i] |= 1ULL << j;
            }
        for (int32_t x = whole * 64; x < width; x++) bits[lut[row[x]] * words + whole] |= 1ULL << (x & 63);
        uint8_t row_max = 0, row_min = 255; /* a separate loop, as it vectorizes */
        for (int32_t x = 0; x < width; x++) {
            row_max = row[x] > row_max ? row[x] : row_max;
            row_min = row[x] < row_min ? row[x] : row_min;
        }
        int32_t hi = lut[row_max], lo = lut[row_min];
        memset(bits, 0, sizeof(uint64_t) * (size_t)words); /* level 0 is never foreground */
        /* levels the row above has foreground at and this row none: the gaps there touch the border */
        for (int32_t k = hi; k < hi_above; k++)
            gaps_to_border(w, runs_at(w, k, y - 1) + w->seg_cap, prev[k].n_fg - 1, width, -1);
        scan_row(w, y, hi, lo < lo_above ? lo : lo_above, prev);
        hi_above = hi;
        lo_above = lo;
    }
    if (w->failed) return;
    Level levels[256];
    memset(levels, 0, sizeof(Level) * (size_t)n_levels);
    score_components(w, &w->fg, 0, gt, n_gt, levels);
    score_components(w, &w->holes, 1, gt, n_gt, levels);
    for (int32_t k = top_level; k < n_levels; k++) { /* no foreground: wsolevaluation's box [0, 0, 0, 0] */
        Box zero = {0, 0, 0, 0};
        levels[k].best = best_iou(&zero, gt, n_gt);
        levels[k].count = 1;
        levels[k].hit = levels[k].best >= 0.5;
        levels[k].miss = !levels[k].hit;
    }
    for (Py_ssize_t i = 0; i < n_thr; i++) {
        Level *level = &levels[level_of[(int32_t)(int64_t)(thresholds[i] * (double)top)]];
        out_best[i] = level->best;
        out_count[i] = level->count;
        /* V1: 0 miss, 1 hit, 2 undecided (the largest contour must be traced) */
        out_v1[i] = !level->hit ? 0 : !level->miss || level->hit_area_min > level->miss_area_max ? 1 : 2;
    }
}

static PyObject *contour_box_ious(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer maps, thresholds, gt, gt_offsets, out_u8, out_best, out_count, out_v1;
    Py_ssize_t n_maps, height, width;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*w*w*w*nnn", &maps, &thresholds, &gt, &gt_offsets, &out_u8, &out_best,
                          &out_count, &out_v1, &n_maps, &height, &width))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t pixels = height * width;
    Py_ssize_t n_thr = thresholds.len / (Py_ssize_t)sizeof(double);
    const int64_t *offsets = gt_offsets.buf;
    const double *thr = thresholds.buf;
    int ok = height >= 1 && width >= 1 && height < 65536 && width < 65536 && n_thr >= 1 &&
             maps.len == (Py_ssize_t)sizeof(float) * n_maps * pixels && out_u8.len == n_maps * pixels &&
             gt_offsets.len == (Py_ssize_t)sizeof(int64_t) * (n_maps + 1) &&
             out_best.len == (Py_ssize_t)sizeof(double) * n_maps * n_thr &&
             out_count.len == (Py_ssize_t)sizeof(int64_t) * n_maps * n_thr && out_v1.len == n_maps * n_thr &&
             offsets[n_maps] * 4 * (Py_ssize_t)sizeof(double) == gt.len;
    for (Py_ssize_t i = 0; ok && i < n_thr; i++) ok = thr[i] >= 0.0 && thr[i] < 1.0 && (!i || thr[i] >= thr[i - 1]);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError,
                        "contour_box_ious: buffer sizes do not match the shapes, or thresholds are not "
                        "non-decreasing in [0, 1)");
        goto done;
    }
    Workspace w = {0};
    w.width = (int32_t)width;
    w.height = (int32_t)height;
    w.words = (int32_t)((width + 63) / 64);
    w.seg_cap = (int32_t)(width / 2 + 2);
    w.bits = calloc(257 * (size_t)w.words, sizeof(uint64_t));
    w.cur = malloc(sizeof(uint64_t) * (size_t)w.words);
    w.border = malloc((size_t)w.seg_cap);
    w.segs = malloc(sizeof(Seg) * 256 * 2 * 2 * (size_t)w.seg_cap);
    if (!w.bits || !w.cur || !w.border || !w.segs) {
        w.failed = 1;
    } else {
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t m = 0; m < n_maps && !w.failed; m++) {
            uint8_t *u8 = (uint8_t *)out_u8.buf + m * pixels;
            uint8_t top = scoremap_uint8((const float *)maps.buf + m * pixels, pixels, u8);
            score_map(&w, u8, top, thr, n_thr, (const double *)gt.buf + 4 * offsets[m],
                      offsets[m + 1] - offsets[m], (double *)out_best.buf + m * n_thr,
                      (int64_t *)out_count.buf + m * n_thr, (int8_t *)out_v1.buf + m * n_thr);
        }
        Py_END_ALLOW_THREADS;
    }
    free(w.bits);
    free(w.cur);
    free(w.border);
    free(w.segs);
    free(w.fg.comps);
    free(w.holes.comps);
    if (w.failed) {
        PyErr_NoMemory();
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
done:
    PyBuffer_Release(&maps);
    PyBuffer_Release(&thresholds);
    PyBuffer_Release(&gt);
    PyBuffer_Release(&gt_offsets);
    PyBuffer_Release(&out_u8);
    PyBuffer_Release(&out_best);
    PyBuffer_Release(&out_count);
    PyBuffer_Release(&out_v1);
    return result;
}

static PyMethodDef methods[] = {
    {"contour_box_ious", contour_box_ious, METH_VARARGS,
     "contour_box_ious(maps, thresholds, gt, gt_offsets, out_u8, out_best, out_count, out_v1, n_maps, height, "
     "width)\nPer map: reference uint8 map; per threshold: best IoU of any contour box, number of contours, "
     "V1 hit (0 no, 1 yes, 2 trace to know)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_levelsets", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__levelsets(void) { return PyModule_Create(&module); }
