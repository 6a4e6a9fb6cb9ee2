/*
 * Per-cell (ZI)NB log-likelihood of a count block given the decoder's expression logits,
 * with its gradients, in one pass over each cell's row.
 *
 * Why C: on CPU this term is bound by memory passes, not arithmetic. Written with torch
 * operations it reads and writes the cells x genes block dozens of times (log-softmax,
 * softplus, logaddexp, their gradients); here each row is read once into L1-sized buffers
 * and the gradients of the row's sum are written once. The gradients are computed in the
 * forward pass ("eagerly"): the per-cell sum is a function of its own row only, so the
 * backward pass only scales them by the incoming per-cell gradient.
 *
 * Plain C99 plus OpenMP, no Python or torch headers: it builds in a second with the
 * system compiler and is loaded with ctypes. exp is Cephes' single-precision polynomial
 * and log(1 + t) an atanh series (both about 1 ulp), written branch-free so that the
 * compiler vectorises them.
 *
 * With d = log(mu / theta) = logit - logsumexp(logits) + log_library - log(theta):
 *   log NB(0)  = z = -theta * softplus(d)
 *   log NB(x)  = z + x (d - softplus(d)) + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
 *   ZINB, gate logits h: log P(0) = logaddexp(h, z) - softplus(h),
 *                        log P(x) = log NB(x) - softplus(h)            (x > 0)
 * Only the stable forms are used (softplus, logaddexp with exp of minus an absolute value),
 * so no input needs a range check.
 */
#define _DEFAULT_SOURCE /* lgamma_r */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float bits_to_float(int32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* exp(x): Cephes expf, range-reduced by ln 2, result scaled through the exponent bits. */
static inline float fast_exp(float x) {
    const float lo = -87.3365f, hi = 88.0f, round = 12582912.0f; /* 1.5 * 2^23 */
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    /* n = nearest integer to x / ln 2 (adding 1.5 * 2^23 rounds; no libm call) */
    float n = (xc * 1.44269504088896341f + round) - round;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    y *= bits_to_float(((int32_t)n + 127) << 23);
    y = x < lo ? 0.0f : y;
    y = x > hi ? INFINITY : y;
    return x != x ? x : y;
}

/* log(x) for positive normal x: Cephes logf without its special cases (the count tables
 * call it on theta + j, theta > 0). */
static inline float fast_log(float x) {
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float e = (float)(((bits >> 23) & 0xff) - 126);
    float m = bits_to_float((bits & 0x007fffff) | 0x3f000000); /* x = m 2^e, m in [0.5, 1) */
    int below = m < 0.707106781186547524f;
    e = below ? e - 1.0f : e;
    m = below ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += e * -2.12194440e-4f;
    y += -0.5f * z;
    return m + y + e * 0.693359375f;
}

/* log(1 + t) for t in [0, 1]: 2 atanh(s) with s = t / (2 + t) in [0, 1/3], as its odd
 * series to s^15 (the next term is below 1e-8 relative), so one division and no
 * exponent arithmetic; exact to float rounding for tiny t as well. */
static inline float log1p_unit(float t) {
    float s = t / (2.0f + t);
    float s2 = s * s;
    float y = 2.0f / 15.0f;
    y = y * s2 + 2.0f / 13.0f;
    y = y * s2 + 2.0f / 11.0f;
    y = y * s2 + 2.0f / 9.0f;
    y = y * s2 + 2.0f / 7.0f;
    y = y * s2 + 2.0f / 5.0f;
    y = y * s2 + 2.0f / 3.0f;
    y = y * s2 + 2.0f;
    return y * s;
}

/* Counts up to TABLE_COUNTS read lgamma(x + theta) - lgamma(theta) = sum_{j < x} log(theta + j)
 * and its theta-derivative sum_{j < x} 1 / (theta + j) from per-gene tables (most UMI
 * counts are small); the tables are count-major, [x - 1][gene], so they build with
 * vectorised loops over genes. Other counts (larger, or not integers) use lgamma and
 * digamma directly, in double. */
#define TABLE_COUNTS 64

static void build_count_tables(int64_t G, const float *theta, float *lgamma_table, float *digamma_table) {
    for (int64_t g = 0; g < G; ++g) {
        lgamma_table[g] = fast_log(theta[g]);
        if (digamma_table) digamma_table[g] = 1.0f / theta[g];
    }
    for (int j = 1; j < TABLE_COUNTS; ++j) {
        const float *lg_previous = lgamma_table + (j - 1) * G;
        float *restrict lg_row = lgamma_table + j * G;
        for (int64_t g = 0; g < G; ++g) lg_row[g] = lg_previous[g] + fast_log(theta[g] + (float)j);
        if (digamma_table) {
            const float *dg_previous = digamma_table + (j - 1) * G;
            float *restrict dg_row = digamma_table + j * G;
            for (int64_t g = 0; g < G; ++g) dg_row[g] = dg_previous[g] + 1.0f / (theta[g] + (float)j);
        }
    }
}

static double digamma(double x) {
    double shifted = 0.0;
    for (; x < 6.0; x += 1.0) shifted -= 1.0 / x;
    const double f = 1.0 / (x * x);
    return shifted + log(x) - 0.5 / x
        - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132))));
}

/* Index of count x in the tables, or -1 when the tables do not cover it. */
static inline int64_t table_row(float x) {
    return (x >= 1.0f && x <= (float)TABLE_COUNTS && x == (float)(int)x) ? (int64_t)x - 1 : -1;
}

static inline float count_lgamma_term(float x, float theta, int64_t g, int64_t G, const float *table) {
    const int64_t j = table_row(x);
    if (j >= 0) return table[j * G + g];
    int sign;
    return (float)(lgamma_r((double)x + theta, &sign) - lgamma_r((double)theta, &sign));
}

static inline float count_digamma_term(float x, float theta, int64_t g, int64_t G, const float *table) {
    const int64_t j = table_row(x);
    if (j >= 0) return table[j * G + g];
    return (float)(digamma((double)x + theta) - digamma((double)theta));
}

/* Per-thread row buffers (G floats each): softmax numerators, what the nonzero entries
 * need of the zero terms, and the row's gradients before the log-softmax. */
typedef struct {
    float *expo, *sp, *p, *q, *zero_minus, *gate_sp, *gate_prob, *grad_d, *grad_gate, *grad_theta;
} RowBuffers;

/* Zero-count terms of one NB row; returns their sum. */
static float nb_zero_terms(int64_t G, const float *restrict row, float shift,
                           const float *restrict theta, const float *restrict log_theta,
                           float *restrict sp, float *restrict p, float *restrict q,
                           float *restrict grad_d,
                           float *restrict grad_theta)
{
    float value = 0.0f;
#pragma omp simd reduction(+ : value)
    for (int64_t g = 0; g < G; ++g) {
        float d = row[g] + shift - log_theta[g];
        float a = fast_exp(-fabsf(d));
        float softplus_d = (d > 0.0f ? d : 0.0f) + log1p_unit(a);
        float inv = 1.0f / (1.0f + a);
        float prob = (d > 0.0f ? 1.0f : a) * inv; /* sigmoid(d) */
        value += -theta[g] * softplus_d;
        sp[g] = softplus_d;
        p[g] = prob;
        q[g] = (d > 0.0f ? a : 1.0f) * inv; /* 1 - sigmoid(d), without cancellation */
        grad_d[g] = -theta[g] * prob;
        grad_theta[g] = prob - softplus_d;
    }
    return value;
}

/* Zero-count terms of one ZINB row (gate logits h); returns their sum. */
static float zinb_zero_terms(int64_t G, const float *restrict row, const float *restrict h_row,
                             float shift, const float *restrict theta,
                             const float *restrict log_theta, float *restrict sp,
                             float *restrict p, float *restrict q, float *restrict zero_minus,
                             float *restrict gate_sp, float *restrict gate_prob,
                             float *restrict grad_d, float *restrict grad_gate,
                             float *restrict grad_theta)
{
    float value = 0.0f;
#pragma omp simd reduction(+ : value)
    for (int64_t g = 0; g < G; ++g) {
        float d = row[g] + shift - log_theta[g];
        float h = h_row[g];
        float a = fast_exp(-fabsf(d));
        float softplus_d = (d > 0.0f ? d : 0.0f) + log1p_unit(a);
        float inv = 1.0f / (1.0f + a);
        float prob = (d > 0.0f ? 1.0f : a) * inv;
        float z = -theta[g] * softplus_d;
        float b = fast_exp(-fabsf(h - z));
        float log_add = (h > z ? h : z) + log1p_unit(b); /* logaddexp(h, z) */
        float c = fast_exp(-fabsf(h));
        float softplus_h = (h > 0.0f ? h : 0.0f) + log1p_unit(c);
        float pi = (h > 0.0f ? 1.0f : c) / (1.0f + c); /* sigmoid(h) */
        float w = (z > h ? 1.0f : b) / (1.0f + b);     /* sigmoid(z - h) */
        float log_zero = log_add - softplus_h;
        value += log_zero;
        sp[g] = softplus_d;
        p[g] = prob;
        q[g] = (d > 0.0f ? a : 1.0f) * inv;
        zero_minus[g] = z - log_zero;
        gate_sp[g] = softplus_h;
        gate_prob[g] = pi;
        grad_d[g] = -theta[g] * prob * w;
        grad_gate[g] = (1.0f - w) - pi;
        grad_theta[g] = (prob - softplus_d) * w;
    }
    return value;
}

/* One cell: its log-likelihood, and (with_grad) its gradients into the output rows. */
static float cell_row(int64_t G, const float *row, const float *h_row, float log_library,
                      const float *theta, const float *log_theta, int64_t first, int64_t last,
                      const int64_t *cols, const float *counts, const float *lgamma_table,
                      const float *digamma_table, const RowBuffers *buf, int with_grad,
                      float *grad_logits_row, float *grad_log_library)
{
    float top = -INFINITY;
#pragma omp simd reduction(max : top)
    for (int64_t g = 0; g < G; ++g) top = row[g] > top ? row[g] : top;
    float total = 0.0f;
    float *restrict expo = buf->expo;
#pragma omp simd reduction(+ : total)
    for (int64_t g = 0; g < G; ++g) {
        expo[g] = fast_exp(row[g] - top);
        total += expo[g];
    }
    const float shift = log_library - (top + logf(total));
    /* double: a row sums thousands of terms whose total is in the thousands */
    double value = h_row == NULL
        ? nb_zero_terms(G, row, shift, theta, log_theta, buf->sp, buf->p, buf->q, buf->grad_d, buf->grad_theta)
        : zinb_zero_terms(G, row, h_row, shift, theta, log_theta, buf->sp, buf->p, buf->q, buf->zero_minus,
                          buf->gate_sp, buf->gate_prob, buf->grad_d, buf->grad_gate, buf->grad_theta);
    /* nonzero entries: their zero term is replaced by log NB(x) (minus softplus(h)) */
    const float *sp = buf->sp, *p = buf->p;
    for (int64_t e = first; e < last; ++e) {
        const int64_t g = cols[e];
        const float x = counts[e], d = row[g] + shift - log_theta[g];
        double term = x * (d - sp[g]) + count_lgamma_term(x, theta[g], g, G, lgamma_table);
        if (h_row != NULL) {
            term += buf->zero_minus[g] - buf->gate_sp[g];
            buf->grad_gate[g] = -buf->gate_prob[g];
        }
        value += term;
        if (with_grad) {
            const float one_minus_p = buf->q[g];
            buf->grad_d[g] = x * one_minus_p - theta[g] * p[g];
            buf->grad_theta[g] = count_digamma_term(x, theta[g], g, G, digamma_table)
                + (p[g] - sp[g]) - x * one_minus_p / theta[g];
        }
    }
    if (with_grad) {
        const float *restrict grad_d = buf->grad_d;
        double sum_grad_d = 0.0;
#pragma omp simd reduction(+ : sum_grad_d)
        for (int64_t g = 0; g < G; ++g) sum_grad_d += grad_d[g];
        /* through the log-softmax: d(d_g)/d(logit_j) = [g == j] - softmax_j */
        const float per_total = (float)(sum_grad_d / total);
        float *restrict out = grad_logits_row;
#pragma omp simd
        for (int64_t g = 0; g < G; ++g) out[g] = grad_d[g] - expo[g] * per_total;
        *grad_log_library = (float)sum_grad_d;
    }
    return (float)value;
}

/* Row i's nonzero entries are [row_start[i], row_start[i + 1]); -1 unless rows are sorted
 * and inside [0, n_cells). */
static int find_row_starts(int64_t n_cells, int64_t n_nonzero, const int64_t *rows, int64_t *row_start)
{
    int64_t k = 0;
    for (int64_t i = 0; i <= n_cells; ++i) {
        while (k < n_nonzero && rows[k] < i) {
            if (k > 0 && rows[k] < rows[k - 1]) return -1;
            ++k;
        }
        row_start[i] = k;
    }
    return k == n_nonzero ? 0 : -1;
}

/*
 * Inputs: logits and gate (n x G, gate NULL for NB), log_library (n), dispersion theta
 * (G), the nonzero entries in row-major order (rows, cols, counts), log_factorial (n,
 * sum over the row of lgamma(x + 1)).
 * Output: per_cell (n). With grad_logits non-NULL also the gradients of each cell's
 * value with respect to its logits, gate logits (ZINB), theta (n x G, summed over cells by
 * the caller) and log library (n).
 * Returns 0, or -1 when rows are not sorted or a buffer cannot be allocated.
 */
int count_log_likelihood(
    int64_t n_cells, int64_t n_genes,
    const float *logits, const float *log_library, const float *gate, const float *dispersion,
    int64_t n_nonzero, const int64_t *rows, const int64_t *cols, const float *counts,
    const float *log_factorial,
    float *per_cell, float *grad_logits, float *grad_gate, float *grad_dispersion,
    float *grad_log_library, int n_threads)
{
    const int64_t G = n_genes;
    const int with_grad = grad_logits != NULL;
    int64_t *row_start = malloc((size_t)(n_cells + 1) * sizeof *row_start);
    float *log_theta = malloc((size_t)G * sizeof *log_theta);
    float *tables = malloc((size_t)G * TABLE_COUNTS * (with_grad ? 2 : 1) * sizeof *tables);
    int failed = row_start == NULL || log_theta == NULL || tables == NULL
        || find_row_starts(n_cells, n_nonzero, rows, row_start) != 0;
    float *lgamma_table = tables, *digamma_table = with_grad && tables ? tables + G * TABLE_COUNTS : NULL;
    if (!failed) {
        for (int64_t g = 0; g < G; ++g) log_theta[g] = logf(dispersion[g]);
        build_count_tables(G, dispersion, lgamma_table, digamma_table);
#pragma omp parallel num_threads(n_threads) reduction(|| : failed)
        {
            /* without gradients their rows go to scratch space */
            float *scratch = malloc((size_t)G * 10 * sizeof *scratch);
            RowBuffers buf = {0};
            if (scratch == NULL) {
                failed = 1;
            } else {
                float *slot[10];
                for (int j = 0; j < 10; ++j) slot[j] = scratch + j * G;
                buf = (RowBuffers){slot[0], slot[1], slot[2], slot[3], slot[4], slot[5], slot[6], slot[7], slot[8], slot[9]};
            }
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n_cells; ++i) {
                if (scratch == NULL) continue;
                RowBuffers row_buf = buf;
                if (with_grad) {
                    row_buf.grad_theta = grad_dispersion + i * G;
                    if (gate != NULL) row_buf.grad_gate = grad_gate + i * G;
                }
                float unused;
                float value = cell_row(
                    G, logits + i * G, gate ? gate + i * G : NULL, log_library[i], dispersion,
                    log_theta, row_start[i], row_start[i + 1], cols, counts, lgamma_table,
                    digamma_table, &row_buf, with_grad, with_grad ? grad_logits + i * G : NULL,
                    with_grad ? grad_log_library + i : &unused);
                per_cell[i] = value - log_factorial[i];
            }
            free(scratch);
        }
    }
    free(row_start);
    free(log_theta);
    free(tables);
    return failed ? -1 : 0;
}
