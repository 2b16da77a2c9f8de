// CPU structural similarity map (forward + backward) of image planes, one pass per separable filter direction.
// The math is metrics.py's `ssim` torch twin (which the tests compare against): a symmetric window of `taps`
// over the valid region (h' = H - n + 1, w' = W - n + 1) gives the means mu_x, mu_y and the second moments
// E[xx], E[yy], E[xy]; variances are E[xx] - mu_x^2 etc., and the map is
// (2 mu_x mu_y + c1)(2 cov + c2) / ((mu_x^2 + mu_y^2 + c1)(var_x + var_y + c2)). Gradients reach x (and y).
#include "render_cpu.h"

#include <algorithm>

namespace {

constexpr double C1 = 0.01 * 0.01;
constexpr double C2 = 0.03 * 0.03;
constexpr int64_t BLOCK = 16;  // pixels of a row filtered together

// The five filtered maps of planes x, y [P, H, W]: stats [5, P, h, w] (mu_x, mu_y, E[xx], E[yy], E[xy]).
template <typename scalar_t>
void filter_moments(const scalar_t* x, const scalar_t* y, const scalar_t* taps, int64_t n, int64_t P, int64_t H,
                    int64_t W, scalar_t* rows, scalar_t* stats) {
    const int64_t w = W - n + 1, h = H - n + 1;
    const int64_t row_plane = H * w, plane = h * w;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t p = 0; p < P; ++p)
        for (int64_t r = 0; r < H; ++r) {  // along rows: [5, P, H, w]
            const scalar_t* xr = x + (p * H + r) * W;
            const scalar_t* yr = y + (p * H + r) * W;
            for (int64_t c0 = 0; c0 < w; c0 += BLOCK) {  // BLOCK pixels' five sums stay in registers over the taps
                const int64_t len = std::min<int64_t>(BLOCK, w - c0);
                scalar_t acc[5][BLOCK] = {};
                for (int64_t k = 0; k < n; ++k) {
                    const scalar_t t = taps[k];
                    const scalar_t *a = xr + c0 + k, *b = yr + c0 + k;
                    for (int64_t j = 0; j < len; ++j) {
                        const scalar_t ta = t * a[j], tb = t * b[j];
                        acc[0][j] += ta, acc[1][j] += tb, acc[2][j] += ta * a[j], acc[3][j] += tb * b[j],
                            acc[4][j] += ta * b[j];
                    }
                }
                for (int q = 0; q < 5; ++q)
                    std::copy(acc[q], acc[q] + len, rows + (q * P + p) * row_plane + r * w + c0);
            }
        }
#pragma omp parallel for collapse(3) schedule(static)
    for (int q = 0; q < 5; ++q)
        for (int64_t p = 0; p < P; ++p)
            for (int64_t r = 0; r < h; ++r) {  // along columns: [5, P, h, w]
                const scalar_t* in = rows + (q * P + p) * row_plane + r * w;
                scalar_t* out = stats + (q * P + p) * plane + r * w;
                for (int64_t c = 0; c < w; ++c) out[c] = 0;
                for (int64_t k = 0; k < n; ++k) {
                    const scalar_t t = taps[k];
                    const scalar_t* src = in + k * w;
                    for (int64_t c = 0; c < w; ++c) out[c] += t * src[c];
                }
            }
}

// The adjoint of the valid filter: grads [Q, h, w] -> [Q, H, W] (zero-padded full correlation), via cols [Q, H, w].
template <typename scalar_t>
void filter_adjoint(const scalar_t* grads, const scalar_t* taps, int64_t n, int64_t Q, int64_t H, int64_t W,
                    scalar_t* cols, scalar_t* out) {
    const int64_t w = W - n + 1, h = H - n + 1;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t q = 0; q < Q; ++q)
        for (int64_t r = 0; r < H; ++r) {  // rows r - k of the valid region feed row r
            scalar_t* dst = cols + (q * H + r) * w;
            for (int64_t c = 0; c < w; ++c) dst[c] = 0;
            for (int64_t k = 0; k < n; ++k) {
                const int64_t source = r - k;
                if (source < 0 || source >= h) continue;
                const scalar_t t = taps[k];
                const scalar_t* src = grads + (q * h + source) * w;
                for (int64_t c = 0; c < w; ++c) dst[c] += t * src[c];
            }
        }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t q = 0; q < Q; ++q)
        for (int64_t r = 0; r < H; ++r) {  // columns c - k feed column c
            const scalar_t* src = cols + (q * H + r) * w;
            scalar_t* dst = out + (q * H + r) * W;
            for (int64_t c = 0; c < W; ++c) dst[c] = 0;
            for (int64_t k = 0; k < n; ++k) {  // column c of the valid region feeds columns c .. c + n - 1
                const scalar_t t = taps[k];
                scalar_t* shifted = dst + k;
                for (int64_t c = 0; c < w; ++c) shifted[c] += t * src[c];
            }
        }
}

// The map's four factors at one pixel of the moments: (a b) / (c d) is its SSIM.
template <typename scalar_t>
inline void factors(scalar_t mx, scalar_t my, scalar_t xx, scalar_t yy, scalar_t xy, scalar_t& a, scalar_t& b,
                    scalar_t& c, scalar_t& d) {
    a = 2 * mx * my + C1, b = 2 * (xy - mx * my) + C2;
    c = mx * mx + my * my + C1, d = (xx - mx * mx) + (yy - my * my) + C2;
}

template <typename scalar_t>
void map_kernel(const scalar_t* stats, int64_t count, scalar_t* map) {
    const scalar_t *mx = stats, *my = stats + count, *xx = stats + 2 * count, *yy = stats + 3 * count,
                   *xy = stats + 4 * count;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) {
        scalar_t a, b, c, d;
        factors(mx[i], my[i], xx[i], yy[i], xy[i], a, b, c, d);
        map[i] = (a * b) / (c * d);
    }
}

// dL/d(mu_x, E[xx], E[xy], mu_y, E[yy]) [5, count] of dL/dmap v_map [count].
template <typename scalar_t>
void moment_grads(const scalar_t* stats, const scalar_t* v_map, int64_t count, scalar_t* grads) {
    const scalar_t *mx = stats, *my = stats + count, *xx = stats + 2 * count, *yy = stats + 3 * count,
                   *xy = stats + 4 * count;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) {
        scalar_t a, b, c, d;
        factors(mx[i], my[i], xx[i], yy[i], xy[i], a, b, c, d);
        const scalar_t g = v_map[i], s = (a * b) / (c * d);
        const scalar_t da = g * b / (c * d), db = g * a / (c * d), dc = -g * s / c, dd = -g * s / d;
        grads[i] = 2 * my[i] * (da - db) + 2 * mx[i] * (dc - dd);  // mu_x
        grads[count + i] = dd;                                       // E[xx]
        grads[2 * count + i] = 2 * db;                               // E[xy]
        grads[3 * count + i] = 2 * mx[i] * (da - db) + 2 * my[i] * (dc - dd);  // mu_y
        grads[4 * count + i] = dd;                                   // E[yy]
    }
}

void check(const at::Tensor& x, const at::Tensor& y, const at::Tensor& taps) {
    TORCH_CHECK(x.device().is_cpu() && y.device().is_cpu() && taps.device().is_cpu() && x.is_contiguous() &&
                    y.is_contiguous() && taps.is_contiguous(),
                "ssim_cpu: CPU contiguous tensors expected");
    TORCH_CHECK(x.scalar_type() == y.scalar_type() && taps.scalar_type() == x.scalar_type(),
                "ssim_cpu: one floating dtype expected");
    TORCH_CHECK(x.dim() == 3 && x.sizes() == y.sizes() && taps.dim() == 1 && taps.size(0) <= x.size(1) &&
                    taps.size(0) <= x.size(2),
                "ssim_cpu: planes x, y [P, H, W] and taps [n] with n <= H, W expected");
}

}  // namespace

std::vector<at::Tensor> ssim_forward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& taps) {
    check(x, y, taps);
    const int64_t P = x.size(0), H = x.size(1), W = x.size(2), n = taps.size(0);
    const int64_t h = H - n + 1, w = W - n + 1;
    auto rows = at::empty({5, P, H, w}, x.options());
    auto stats = at::empty({5, P, h, w}, x.options());
    auto map = at::empty({P, h, w}, x.options());
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_cpu_forward", [&] {
        filter_moments<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), taps.data_ptr<scalar_t>(), n, P, H,
                                 W, rows.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>());
        map_kernel<scalar_t>(stats.data_ptr<scalar_t>(), P * h * w, map.data_ptr<scalar_t>());
    });
    return {map, stats};
}

std::vector<at::Tensor> ssim_backward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& taps,
                                      const at::Tensor& stats, const at::Tensor& v_map, bool need_y) {
    check(x, y, taps);
    const int64_t P = x.size(0), H = x.size(1), W = x.size(2), n = taps.size(0);
    const int64_t h = H - n + 1, w = W - n + 1;
    TORCH_CHECK(stats.is_contiguous() && v_map.is_contiguous() && stats.numel() == 5 * P * h * w &&
                    v_map.numel() == P * h * w && v_map.scalar_type() == x.scalar_type(),
                "ssim_cpu: stats [5, P, h, w] and v_map [P, h, w] contiguous expected");
    const int64_t Q = need_y ? 5 : 3;  // x's three moments, then y's two
    auto grads = at::empty({5, P, h, w}, x.options());
    auto cols = at::empty({Q * P, H, w}, x.options());
    auto spread = at::empty({Q, P, H, W}, x.options());
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_cpu_backward", [&] {
        moment_grads<scalar_t>(stats.data_ptr<scalar_t>(), v_map.data_ptr<scalar_t>(), P * h * w,
                               grads.data_ptr<scalar_t>());
        filter_adjoint<scalar_t>(grads.data_ptr<scalar_t>(), taps.data_ptr<scalar_t>(), n, Q * P, H, W,
                                 cols.data_ptr<scalar_t>(), spread.data_ptr<scalar_t>());
    });
    // d/dx: mu_x' + 2 x E[xx]' + y E[xy]'; d/dy: mu_y' + 2 y E[yy]' + x E[xy]'
    auto v_x = spread[0] + 2 * x * spread[1] + y * spread[2];
    auto v_y = need_y ? spread[3] + 2 * y * spread[4] + x * spread[2] : at::Tensor();
    return {v_x, v_y};
}
