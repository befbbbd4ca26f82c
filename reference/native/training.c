/* The training container in C: narrowing at the max anchor and the Quantum width gradients.
 *
 * The training container Container.training(e, m) has base fp32, specials none and subnormals
 * off. Anchored at the tensor maximum, its window is anchor - (2^e - 2) .. anchor, where the
 * anchor is the exponent of the largest magnitude after rounding to m mantissa bits (C4, C5).
 * Rounding adds a constant-d integer step to the FP32 pattern and clears the dropped bits, and
 * magnitudes below 2^min_exponent flush to zero of the same sign (C12). This is the integer
 * arithmetic of reference/quantize_lean.py, which stays the reference.
 *
 * narrow returns None for the cases that the numpy path handles by its general rules: an
 * empty tensor, inf or NaN, no FP32 normal value, a maximum that rounds to 2^128, and an FP32
 * subnormal input when the window reaches below 2^-126. collapse_gradients returns None when
 * one of its corners meets the last two cases. Only nearest-even and toward-zero rounding are
 * served here; stochastic rounding stays in numpy.
 *
 * collapse_gradients sums g * (Q_high - Q_low) in float64 in exactly the order of numpy 2.4's
 * np.sum(float32_array, dtype=np.float64), as tests/test_native_training.py checks: blocks of
 * SUM_BLOCK values (numpy's default buffer size) cast to float64, each summed pairwise with 8
 * accumulators over runs of up to 128 values, and the block sums added in turn to +0.0. The
 * caller checks np.getbufsize(). The sign of a zero term never changes such a sum, because a
 * zero partial sum only ever meets another zero or vanishes beside a nonzero one, and the
 * final +0.0 + (-0.0) is +0.0.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAGNITUDE_MASK 0x7FFFFFFFu
#define FP32_INF_BITS 0x7F800000u
#define FP32_MIN_NORMAL_BITS 0x00800000u
#define SUM_BLOCK 8192
#define PAIRWISE_BLOCK 128

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

enum { NEAREST_EVEN = 0, TOWARD_ZERO = 1 };

/* Constants of the constant-d integer rounding to m mantissa bits. */
typedef struct {
    uint32_t dropped;       /* 23 - m */
    uint32_t parity_mask;   /* 1 where the kept last bit breaks ties (nearest even, 0 < m < 23) */
    uint32_t force_up;      /* 1 at m = 0, where every tie rounds up to significand 2 */
    uint32_t half_minus_one;
    uint32_t keep_mask;
} Rounding;

/* One corner Q(x; e, m): its rounding and the magnitude bits of 2^min_exponent, below which
 * values flush (0 when nothing flushes). */
typedef struct {
    Rounding rounding;
    uint32_t flush_below;
} Corner;

static int rounded_exponent(uint32_t magnitude, int mantissa_bits, int rounding)
{
    int dropped = 23 - mantissa_bits;
    uint32_t low_mask = (1u << dropped) - 1u;
    uint32_t rounded = magnitude;
    if (dropped > 0 && rounding == NEAREST_EVEN) {
        rounded += 1u << (dropped - 1);
        if (mantissa_bits > 0) {
            rounded += ((magnitude >> dropped) & 1u) - 1u;
        }
    }
    return (int)((rounded & ~low_mask) >> 23) - 127;
}

/* Fill *corner for Q(x; e, m) given the tensor's largest and smallest nonzero magnitudes.
 * Return 0, or -1 when the numpy path must narrow at these widths. */
static int make_corner(Corner *corner, int exponent_bits, int mantissa_bits, int rounding,
                       uint32_t largest, uint32_t smallest_nonzero)
{
    int anchor = rounded_exponent(largest, mantissa_bits, rounding);
    if (anchor > 127) {
        return -1;  /* the max rounds to 2^128 and overflows */
    }
    int min_exponent = anchor - ((1 << exponent_bits) - 2);
    if (min_exponent > -126) {
        corner->flush_below = (uint32_t)(min_exponent + 127) << 23;
    } else if (smallest_nonzero < FP32_MIN_NORMAL_BITS) {
        return -1;  /* an FP32 subnormal input inside the window needs the exact path */
    } else {
        corner->flush_below = 0;
    }
    uint32_t dropped = (uint32_t)(23 - mantissa_bits);
    int rounds = dropped > 0 && rounding == NEAREST_EVEN;
    Rounding *r = &corner->rounding;
    r->dropped = dropped;
    r->parity_mask = (rounds && mantissa_bits > 0) ? 1u : 0u;
    r->force_up = (rounds && mantissa_bits == 0) ? 1u : 0u;
    r->half_minus_one = rounds ? (1u << (dropped - 1)) - 1u : 0u;
    r->keep_mask = (uint32_t)(0xFFFFFFFFull << dropped);
    return 0;
}

/* The rounded pattern of one element. The sign rides along: no carry reaches it, because
 * every magnitude is at most the largest, whose rounding stays below 2^128. */
static inline uint32_t round_bits(uint32_t bits, const Rounding *r)
{
    uint32_t step = r->half_minus_one + (((bits >> r->dropped) & r->parity_mask) | r->force_up);
    return (bits + step) & r->keep_mask;
}

/* Clear the magnitude of a rounded pattern below flush_below, keeping the sign. Both sides
 * are below 2^31, so the signed comparison, which SSE2 and AVX2 have, gives the same result. */
static inline uint32_t flush_bits(uint32_t rounded, uint32_t flush_below)
{
    uint32_t magnitude = rounded & MAGNITUDE_MASK;
    uint32_t below = 0u - (uint32_t)((int32_t)magnitude < (int32_t)flush_below);
    return rounded ^ (magnitude & below);
}

static inline float float_of(uint32_t bits)
{
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

VECTOR_CLONES
static void magnitude_range(const uint32_t *bits, Py_ssize_t n, uint32_t *largest,
                            uint32_t *smallest_nonzero)
{
    uint32_t high = 0, low_minus_one = 0xFFFFFFFFu;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t magnitude = bits[i] & MAGNITUDE_MASK;
        /* Subtracting 1 wraps zeros to the top, so the minimum finds the smallest nonzero. */
        uint32_t wrapped = magnitude - 1u;
        high = magnitude > high ? magnitude : high;
        low_minus_one = wrapped < low_minus_one ? wrapped : low_minus_one;
    }
    *largest = high;
    *smallest_nonzero = low_minus_one + 1u;
}

VECTOR_CLONES
static void narrow_loop(const uint32_t *bits, uint32_t *out, Py_ssize_t n, Corner corner)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = flush_bits(round_bits(bits[i], &corner.rounding), corner.flush_below);
    }
}

/* The corners of collapse mode: the stored one S = Q(x; e, m), its mantissa neighbour
 * M = Q(x; e, m_other) and its exponent neighbour E = Q(x; e_other, m). S and E share one
 * rounding and differ only in where they flush, so E - S is the rounded value r between the
 * two flush points and zero elsewhere, oriented as wider minus narrower. */
typedef struct {
    Rounding stored_rounding;
    Rounding other_rounding;
    uint32_t stored_flush;
    uint32_t mantissa_flush;   /* where M flushes */
    int32_t band_low;          /* the lower of the two flush points of S and E */
    int32_t band_high;         /* the higher one */
    float mantissa_sign;       /* +1 when M is the wider corner, else -1 */
} Collapse;

/* The terms g * (high - low) of both width gradients. The float32 difference is exact (both
 * values round the same x), and the product rounds once, as in the numpy path. Negating
 * (other - stored) gives stored - other exactly, except that a zero difference becomes -0.
 * For the exponent, the wider corner minus the narrower one is r - (+-0) = r inside the band
 * and a zero outside it. A zero's sign leaves the sum unchanged (see the top of this file). */
VECTOR_CLONES
static void collapse_terms(const uint32_t *bits, const float *g, float *mantissa_terms,
                           float *exponent_terms, Py_ssize_t n, Collapse c)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t rounded = round_bits(bits[i], &c.stored_rounding);
        int32_t magnitude = (int32_t)(rounded & MAGNITUDE_MASK);
        float stored = float_of(flush_bits(rounded, c.stored_flush));
        float mantissa_other = float_of(
            flush_bits(round_bits(bits[i], &c.other_rounding), c.mantissa_flush));
        uint32_t in_band = 0u - (uint32_t)((magnitude >= c.band_low) & (magnitude < c.band_high));
        mantissa_terms[i] = g[i] * ((mantissa_other - stored) * c.mantissa_sign);
        exponent_terms[i] = g[i] * float_of(rounded & in_band);
    }
}

VECTOR_CLONES
static void mantissa_terms_only(const uint32_t *bits, const float *g, float *mantissa_terms,
                                Py_ssize_t n, Collapse c)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        float stored = float_of(flush_bits(round_bits(bits[i], &c.stored_rounding),
                                           c.stored_flush));
        float mantissa_other = float_of(
            flush_bits(round_bits(bits[i], &c.other_rounding), c.mantissa_flush));
        mantissa_terms[i] = g[i] * ((mantissa_other - stored) * c.mantissa_sign);
    }
}

/* Sum of 8 <= n <= 128 values: numpy's 8 accumulators, then the rest in turn. Each vector
 * lane below is one accumulator that adds the same values in the same order as numpy's. */
#if defined(__GNUC__)
typedef float float4 __attribute__((vector_size(16)));
typedef double double4 __attribute__((vector_size(32)));

VECTOR_CLONES
static double sum_run(const float *a, Py_ssize_t n)
{
    float4 low, high;
    memcpy(&low, a, sizeof low);
    memcpy(&high, a + 4, sizeof high);
    double4 r0 = __builtin_convertvector(low, double4);
    double4 r1 = __builtin_convertvector(high, double4);
    Py_ssize_t i;
    for (i = 8; i < n - (n % 8); i += 8) {
        memcpy(&low, a + i, sizeof low);
        memcpy(&high, a + i + 4, sizeof high);
        r0 += __builtin_convertvector(low, double4);
        r1 += __builtin_convertvector(high, double4);
    }
    double sum = ((r0[0] + r0[1]) + (r0[2] + r0[3])) + ((r1[0] + r1[1]) + (r1[2] + r1[3]));
    for (; i < n; i++) {
        sum += (double)a[i];
    }
    return sum;
}
#else
static double sum_run(const float *a, Py_ssize_t n)
{
    double r[8];
    for (int j = 0; j < 8; j++) {
        r[j] = (double)a[j];
    }
    Py_ssize_t i;
    for (i = 8; i < n - (n % 8); i += 8) {
        for (int j = 0; j < 8; j++) {
            r[j] += (double)a[i + j];
        }
    }
    double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) {
        sum += (double)a[i];
    }
    return sum;
}
#endif

/* numpy's pairwise summation of float64 values, here of float32 values cast on the fly. */
static double pairwise_sum(const float *a, Py_ssize_t n)
{
    if (n < 8) {
        double sum = 0.0;
        for (Py_ssize_t i = 0; i < n; i++) {
            sum += (double)a[i];
        }
        return sum;
    }
    if (n <= PAIRWISE_BLOCK) {
        return sum_run(a, n);
    }
    Py_ssize_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

/* Buffers of the Python arguments, released together. */
typedef struct {
    Py_buffer views[3];
    int count;
} Views;

static void release_views(Views *views)
{
    for (int i = 0; i < views->count; i++) {
        PyBuffer_Release(&views->views[i]);
    }
    views->count = 0;
}

/* Take a C-contiguous buffer of 4-byte items (float32 or uint32) as the next view. */
static Py_buffer *get_view(Views *views, PyObject *object, const char *name, int writable)
{
    Py_buffer *view = &views->views[views->count];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) != 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s: must be a C-contiguous%s float32 array; got %.100s (pass "
                     "np.ascontiguousarray(%s, dtype=np.float32))",
                     name, writable ? ", writable" : "", Py_TYPE(object)->tp_name, name);
        return NULL;
    }
    views->count++;
    const char *format = view->format ? view->format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') {
        format++;
    }
    if (view->itemsize != 4 || (strcmp(format, "f") != 0 && strcmp(format, "I") != 0)) {
        PyErr_Format(PyExc_TypeError,
                     "%s: must hold float32 or uint32 items; got format '%s' with itemsize %zd",
                     name, view->format ? view->format : "B", view->itemsize);
        return NULL;
    }
    return view;
}

static int parse_widths(int exponent_bits, int mantissa_bits, int rounding)
{
    if (exponent_bits < 1 || exponent_bits > 8) {
        PyErr_Format(PyExc_ValueError, "exponent_bits: must be in 1..8; got %d", exponent_bits);
        return -1;
    }
    if (mantissa_bits < 0 || mantissa_bits > 23) {
        PyErr_Format(PyExc_ValueError, "mantissa_bits: must be in 0..23; got %d", mantissa_bits);
        return -1;
    }
    if (rounding != NEAREST_EVEN && rounding != TOWARD_ZERO) {
        PyErr_Format(PyExc_ValueError,
                     "rounding: must be 0 (nearest even) or 1 (toward zero); got %d", rounding);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(narrow_doc,
"narrow(x, out, exponent_bits, mantissa_bits, rounding) -> (largest, smallest_nonzero) or None\n\n"
"Write Q(x; e, m) at the max anchor into out (both C-contiguous float32 of one size) and\n"
"return the magnitude bits of the largest and the smallest nonzero |x|. Return None, leaving\n"
"out unspecified, when the numpy path must narrow x. rounding: 0 nearest even, 1 toward zero.");

static PyObject *narrow(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *x_object, *out_object;
    int exponent_bits, mantissa_bits, rounding;
    if (!PyArg_ParseTuple(args, "OOiii:narrow", &x_object, &out_object, &exponent_bits,
                          &mantissa_bits, &rounding)) {
        return NULL;
    }
    if (parse_widths(exponent_bits, mantissa_bits, rounding) != 0) {
        return NULL;
    }
    Views views = {.count = 0};
    Py_buffer *x = get_view(&views, x_object, "x", 0);
    Py_buffer *out = x ? get_view(&views, out_object, "out", 1) : NULL;
    if (out == NULL) {
        release_views(&views);
        return NULL;
    }
    if (out->len != x->len) {
        PyErr_Format(PyExc_ValueError, "out: must have the size of x (%zd values); got %zd",
                     x->len / 4, out->len / 4);
        release_views(&views);
        return NULL;
    }
    Py_ssize_t n = x->len / 4;
    const uint32_t *bits = x->buf;
    uint32_t largest = 0, smallest_nonzero = 0;
    int served = 0;
    Py_BEGIN_ALLOW_THREADS
    if (n > 0) {
        magnitude_range(bits, n, &largest, &smallest_nonzero);
        Corner corner;
        if (largest < FP32_INF_BITS && largest >= FP32_MIN_NORMAL_BITS
            && make_corner(&corner, exponent_bits, mantissa_bits, rounding, largest,
                           smallest_nonzero) == 0) {
            narrow_loop(bits, out->buf, n, corner);
            served = 1;
        }
    }
    Py_END_ALLOW_THREADS
    release_views(&views);
    if (!served) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(kk)", (unsigned long)largest, (unsigned long)smallest_nonzero);
}

PyDoc_STRVAR(collapse_gradients_doc,
"collapse_gradients(x, g, largest, smallest_nonzero, rounding, exponent_bits, mantissa_bits,\n"
"                   other_exponent_bits, other_mantissa_bits) -> (grad_m, grad_e) or None\n\n"
"Return the width gradients of collapse mode at the stored widths (e, m): grad_m is\n"
"sum(g * (Q(x; e, m_hi) - Q(x; e, m_lo))) over {m_lo, m_hi} = {m, other_mantissa_bits}, and\n"
"grad_e likewise over {e, other_exponent_bits} at m; other_exponent_bits = 0 skips it (grad_e\n"
"is then 0.0). Each other width is one step from the stored one. Products are float32 and\n"
"sums float64 in numpy's order. x and g are C-contiguous float32 arrays of one size;\n"
"largest and smallest_nonzero are what narrow returned for x. Return None when the numpy\n"
"path must narrow some corner.");

static int check_neighbour(const char *name, int width, int other)
{
    if (other != width - 1 && other != width + 1) {
        PyErr_Format(PyExc_ValueError, "%s: must be one step from the stored width %d; got %d",
                     name, width, other);
        return -1;
    }
    return 0;
}

static PyObject *collapse_gradients(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *x_object, *g_object;
    unsigned long largest_arg, smallest_arg;
    int rounding, exponent_bits, mantissa_bits, other_exponent_bits, other_mantissa_bits;
    if (!PyArg_ParseTuple(args, "OOkkiiiii:collapse_gradients", &x_object, &g_object,
                          &largest_arg, &smallest_arg, &rounding, &exponent_bits,
                          &mantissa_bits, &other_exponent_bits, &other_mantissa_bits)) {
        return NULL;
    }
    int with_exponent = other_exponent_bits != 0;
    if (parse_widths(exponent_bits, mantissa_bits, rounding) != 0
        || parse_widths(exponent_bits, other_mantissa_bits, rounding) != 0
        || check_neighbour("other_mantissa_bits", mantissa_bits, other_mantissa_bits) != 0) {
        return NULL;
    }
    if (with_exponent
        && (parse_widths(other_exponent_bits, mantissa_bits, rounding) != 0
            || check_neighbour("other_exponent_bits", exponent_bits, other_exponent_bits) != 0)) {
        return NULL;
    }
    uint32_t largest = (uint32_t)largest_arg, smallest_nonzero = (uint32_t)smallest_arg;
    if (largest_arg != largest || largest < FP32_MIN_NORMAL_BITS || largest >= FP32_INF_BITS
        || smallest_arg != smallest_nonzero || smallest_nonzero == 0
        || smallest_nonzero > largest) {
        PyErr_Format(PyExc_ValueError,
                     "largest, smallest_nonzero: must be the magnitude bits that narrow returned "
                     "(a finite FP32 normal maximum and a nonzero minimum below it); got "
                     "0x%08lx, 0x%08lx", largest_arg, smallest_arg);
        return NULL;
    }
    Corner stored, mantissa_other, exponent_other;
    if (make_corner(&stored, exponent_bits, mantissa_bits, rounding, largest,
                    smallest_nonzero) != 0
        || make_corner(&mantissa_other, exponent_bits, other_mantissa_bits, rounding, largest,
                       smallest_nonzero) != 0
        || (with_exponent
            && make_corner(&exponent_other, other_exponent_bits, mantissa_bits, rounding,
                           largest, smallest_nonzero) != 0)) {
        Py_RETURN_NONE;
    }
    uint32_t exponent_flush = with_exponent ? exponent_other.flush_below : stored.flush_below;
    uint32_t band_low = stored.flush_below < exponent_flush ? stored.flush_below : exponent_flush;
    uint32_t band_high = stored.flush_below ^ exponent_flush ^ band_low;
    Collapse c = {
        .stored_rounding = stored.rounding,
        .other_rounding = mantissa_other.rounding,
        .stored_flush = stored.flush_below,
        .mantissa_flush = mantissa_other.flush_below,
        .band_low = (int32_t)band_low,
        .band_high = (int32_t)band_high,
        .mantissa_sign = other_mantissa_bits > mantissa_bits ? 1.0f : -1.0f,
    };

    Views views = {.count = 0};
    Py_buffer *x = get_view(&views, x_object, "x", 0);
    Py_buffer *g = x ? get_view(&views, g_object, "g", 0) : NULL;
    if (g == NULL) {
        release_views(&views);
        return NULL;
    }
    if (g->len != x->len || x->len == 0) {
        PyErr_Format(PyExc_ValueError, "g: must have the size of x, which must not be empty; "
                     "got %zd and %zd values", g->len / 4, x->len / 4);
        release_views(&views);
        return NULL;
    }
    float *terms = malloc(2 * SUM_BLOCK * sizeof(float));
    if (terms == NULL) {
        release_views(&views);
        return PyErr_NoMemory();
    }
    Py_ssize_t n = x->len / 4;
    const uint32_t *bits = x->buf;
    const float *gradient = g->buf;
    double grad_m = 0.0, grad_e = 0.0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t start = 0; start < n; start += SUM_BLOCK) {
        Py_ssize_t count = n - start < SUM_BLOCK ? n - start : SUM_BLOCK;
        if (with_exponent) {
            collapse_terms(bits + start, gradient + start, terms, terms + SUM_BLOCK, count, c);
            grad_e += pairwise_sum(terms + SUM_BLOCK, count);
        } else {
            mantissa_terms_only(bits + start, gradient + start, terms, count, c);
        }
        grad_m += pairwise_sum(terms, count);
    }
    Py_END_ALLOW_THREADS
    free(terms);
    release_views(&views);
    return Py_BuildValue("(dd)", grad_m, grad_e);
}

static PyMethodDef methods[] = {
    {"narrow", narrow, METH_VARARGS, narrow_doc},
    {"collapse_gradients", collapse_gradients, METH_VARARGS, collapse_gradients_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "reference.native._training",
    "The training container and the Quantum width gradients in C (see training.c).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__training(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "SUM_BLOCK", SUM_BLOCK) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
