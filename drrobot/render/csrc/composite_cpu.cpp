// CPU alpha compositing of tile-binned, depth-sorted 2D Gaussians (forward + backward).
// Per-pixel semantics follow gsplat's RasterizeToPixels3DGS{Fwd,Bwd}.cu; see composite.py for the
// shared contract (n_proc = number of list entries a pixel went through). Parallel over tiles (OpenMP).
#include "render_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr double kAlphaThreshold = 1.0 / 255.0;
constexpr double kMaxAlpha = 0.999;
constexpr double kMinTransmittance = 1e-4;

struct Grid {
    int64_t n_images, height, width, tile_size, tile_width, tile_height;
    Grid(int64_t I, int64_t H, int64_t W, int64_t ts)
        : n_images(I), height(H), width(W), tile_size(ts), tile_width((W + ts - 1) / ts),
          tile_height((H + ts - 1) / ts) {}
    int64_t n_tiles() const { return n_images * tile_width * tile_height; }
};

// Copies a tile's Gaussians into contiguous arrays: (mx, my, a, b, c, opacity, sigma cut-off).
template <typename scalar_t>
struct TileCache {
    std::vector<scalar_t> g;    // [K, 7]
    std::vector<scalar_t> col;  // [K, D]
    void load(const scalar_t* means2d, const scalar_t* conics, const scalar_t* colors,
              const scalar_t* opacities, const int64_t* ids, int64_t begin, int64_t end, int64_t D) {
        const int64_t K = end - begin;
        g.resize(K * 7);
        col.resize(K * D);
        for (int64_t k = 0; k < K; ++k) {
            const int64_t id = ids[begin + k];
            scalar_t* r = &g[k * 7];
            r[0] = means2d[id * 2];
            r[1] = means2d[id * 2 + 1];
            r[2] = conics[id * 3];
            r[3] = conics[id * 3 + 1];
            r[4] = conics[id * 3 + 2];
            r[5] = opacities[id];
            // alpha < 1/255 for sure beyond this sigma; the exact test is still done below it
            r[6] = r[5] > 0 ? std::log(r[5] / kAlphaThreshold) + 1e-3 : scalar_t(-1);
            std::copy(colors + id * D, colors + (id + 1) * D, &col[k * D]);
        }
    }
};

// sigma and alpha of cached Gaussian k at pixel centre (px, py); false when it is skipped.
template <typename scalar_t>
inline bool eval_alpha(const scalar_t* r, scalar_t px, scalar_t py, scalar_t& dx, scalar_t& dy,
                       scalar_t& sigma, scalar_t& vis, scalar_t& alpha) {
    dx = r[0] - px;
    dy = r[1] - py;
    sigma = scalar_t(0.5) * (r[2] * dx * dx + r[4] * dy * dy) + r[3] * dx * dy;
    if (sigma < 0 || sigma > r[6]) return false;
    vis = std::exp(-sigma);
    alpha = std::min(scalar_t(kMaxAlpha), r[5] * vis);
    return alpha >= scalar_t(kAlphaThreshold);
}

// A tile's pixels: columns [x0, x1), rows [y0, y1) of image `image`.
struct TileRect {
    int64_t image, x0, x1, y0, y1;
    TileRect(const Grid& grid, int64_t tile) {
        image = tile / (grid.tile_width * grid.tile_height);
        const int64_t t = tile % (grid.tile_width * grid.tile_height);
        y0 = (t / grid.tile_width) * grid.tile_size;
        x0 = (t % grid.tile_width) * grid.tile_size;
        y1 = std::min(y0 + grid.tile_size, grid.height);
        x1 = std::min(x0 + grid.tile_size, grid.width);
    }
    int64_t width() const { return x1 - x0; }
    int64_t n_pixels() const { return (x1 - x0) * (y1 - y0); }
};

// The tile's pixels whose centres may pass `eval_alpha` for cached Gaussian r: the bounding box of the ellipse
// sigma <= cut-off, widened by a margin (every pixel in it is still tested exactly). Returns false when none.
template <typename scalar_t>
inline bool pixel_span(const scalar_t* r, const TileRect& rect, int64_t& xa, int64_t& xb, int64_t& ya, int64_t& yb) {
    const double cut = double(r[6]);
    if (cut < 0) return false;
    const double a = r[2], b = r[3], c = r[4], det = a * c - b * b;
    xa = rect.x0, xb = rect.x1, ya = rect.y0, yb = rect.y1;
    if (!(det > 0) || !(a > 0) || !(c > 0)) return true;  // not an ellipse: test the whole tile
    const double ex = std::sqrt(2.0 * cut * c / det) + 0.01, ey = std::sqrt(2.0 * cut * a / det) + 0.01;
    const double mx = double(r[0]) - 0.5, my = double(r[1]) - 0.5;  // pixel x has its centre at x + 0.5
    if (!std::isfinite(ex) || !std::isfinite(ey) || !std::isfinite(mx) || !std::isfinite(my)) return true;
    xa = std::max(xa, int64_t(std::ceil(std::max(mx - ex, double(rect.x0) - 1))));
    xb = std::min(xb, int64_t(std::floor(std::min(mx + ex, double(rect.x1)))) + 1);
    ya = std::max(ya, int64_t(std::ceil(std::max(my - ey, double(rect.y0) - 1))));
    yb = std::min(yb, int64_t(std::floor(std::min(my + ey, double(rect.y1)))) + 1);
    return xa < xb && ya < yb;
}

// Gaussian-major within a tile: each Gaussian, front to back, visits only the pixels of its ellipse's box that
// are still open, so the work follows the actual overlaps rather than (tile pixels) x (tile Gaussians). Per pixel
// the order and arithmetic are those of gsplat's pixel-major loop.
template <typename scalar_t>
void forward_kernel(const Grid& grid, const scalar_t* means2d, const scalar_t* conics,
                    const scalar_t* colors, const scalar_t* opacities, const int64_t* offsets,
                    const int64_t* ids, int64_t D, scalar_t* out_fg, scalar_t* out_alpha,
                    int32_t* out_n) {
    const int64_t n_tiles = grid.n_tiles();
#pragma omp parallel
    {
        TileCache<scalar_t> cache;
        std::vector<scalar_t> T, acc;
        std::vector<int32_t> stop;  // per pixel: the list entry it stopped at (K: never)
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; ++tile) {
            const int64_t begin = offsets[tile], end = offsets[tile + 1], K = end - begin;
            if (K == 0) continue;  // outputs are pre-filled (fg 0, alpha 0, n 0)
            cache.load(means2d, conics, colors, opacities, ids, begin, end, D);
            const TileRect rect(grid, tile);
            const int64_t P = rect.n_pixels(), tw = rect.width();
            T.assign(P, scalar_t(1));
            acc.assign(P * D, scalar_t(0));
            stop.assign(P, int32_t(K));
            int64_t open = P;
            for (int64_t k = 0; k < K && open > 0; ++k) {
                const scalar_t* r = &cache.g[k * 7];
                int64_t xa, xb, ya, yb;
                if (!pixel_span(r, rect, xa, xb, ya, yb)) continue;
                const scalar_t* c = &cache.col[k * D];
                for (int64_t y = ya; y < yb; ++y) {
                    const scalar_t py = scalar_t(y) + scalar_t(0.5);
                    for (int64_t x = xa; x < xb; ++x) {
                        const int64_t p = (y - rect.y0) * tw + (x - rect.x0);
                        if (stop[p] != K) continue;
                        scalar_t dx, dy, sigma, vis, alpha;
                        if (!eval_alpha(r, scalar_t(x) + scalar_t(0.5), py, dx, dy, sigma, vis, alpha)) continue;
                        const scalar_t next_T = T[p] * (1 - alpha);
                        if (next_T <= scalar_t(kMinTransmittance)) {
                            stop[p] = int32_t(k);
                            --open;
                            continue;
                        }
                        const scalar_t w = alpha * T[p];
                        scalar_t* a = &acc[p * D];
                        for (int64_t d = 0; d < D; ++d) a[d] += w * c[d];
                        T[p] = next_T;
                    }
                }
            }
            for (int64_t y = rect.y0; y < rect.y1; ++y) {
                for (int64_t x = rect.x0; x < rect.x1; ++x) {
                    const int64_t p = (y - rect.y0) * tw + (x - rect.x0);
                    const int64_t pix = (rect.image * grid.height + y) * grid.width + x;
                    std::copy(&acc[p * D], &acc[p * D] + D, out_fg + pix * D);
                    out_alpha[pix] = 1 - T[p];
                    out_n[pix] = stop[p];
                }
            }
        }
    }
}

// Writes per-intersection gradients [n_isects, 6 + D]: v_mean2d (2), v_conic (3), v_opacity, v_color (D).
// Gaussian-major, back to front, each Gaussian over the open pixels of its box (as the forward).
template <typename scalar_t>
void backward_kernel(const Grid& grid, const scalar_t* means2d, const scalar_t* conics,
                     const scalar_t* colors, const scalar_t* opacities, const int64_t* offsets,
                     const int64_t* ids, int64_t D, const scalar_t* alphas, const int32_t* n_proc,
                     const scalar_t* v_fg, const scalar_t* v_alpha, scalar_t* grads) {
    const int64_t n_tiles = grid.n_tiles(), G = 6 + D;
#pragma omp parallel
    {
        TileCache<scalar_t> cache;
        std::vector<scalar_t> T, behind;
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; ++tile) {
            const int64_t begin = offsets[tile], end = offsets[tile + 1], K = end - begin;
            if (K == 0) continue;
            cache.load(means2d, conics, colors, opacities, ids, begin, end, D);
            scalar_t* out = grads + begin * G;  // this tile's rows, written by this thread only
            const TileRect rect(grid, tile);
            const int64_t P = rect.n_pixels(), tw = rect.width();
            T.resize(P);
            behind.assign(P * D, scalar_t(0));
            for (int64_t y = rect.y0; y < rect.y1; ++y)
                for (int64_t x = rect.x0; x < rect.x1; ++x)
                    T[(y - rect.y0) * tw + (x - rect.x0)] = 1 - alphas[(rect.image * grid.height + y) * grid.width + x];
            for (int64_t k = K - 1; k >= 0; --k) {
                const scalar_t* r = &cache.g[k * 7];
                int64_t xa, xb, ya, yb;
                if (!pixel_span(r, rect, xa, xb, ya, yb)) continue;
                const scalar_t* c = &cache.col[k * D];
                scalar_t* o = out + k * G;
                for (int64_t y = ya; y < yb; ++y) {
                    const scalar_t py = scalar_t(y) + scalar_t(0.5);
                    for (int64_t x = xa; x < xb; ++x) {
                        const int64_t pix = (rect.image * grid.height + y) * grid.width + x;
                        if (k >= int64_t(n_proc[pix])) continue;
                        scalar_t dx, dy, sigma, vis, alpha;
                        if (!eval_alpha(r, scalar_t(x) + scalar_t(0.5), py, dx, dy, sigma, vis, alpha)) continue;
                        const int64_t p = (y - rect.y0) * tw + (x - rect.x0);
                        const scalar_t ra = 1 / (1 - alpha);
                        T[p] *= ra;  // transmittance in front of k
                        const scalar_t Tp = T[p], w = alpha * Tp;
                        const scalar_t* vc = v_fg + pix * D;
                        scalar_t* bh = &behind[p * D];
                        scalar_t v_al = (1 - alphas[pix]) * ra * v_alpha[pix];
                        for (int64_t d = 0; d < D; ++d) {
                            v_al += (c[d] * Tp - bh[d] * ra) * vc[d];
                            o[6 + d] += w * vc[d];
                            bh[d] += c[d] * w;
                        }
                        if (r[5] * vis <= scalar_t(kMaxAlpha)) {
                            const scalar_t v_sig = -r[5] * vis * v_al;
                            o[0] += v_sig * (r[2] * dx + r[3] * dy);
                            o[1] += v_sig * (r[3] * dx + r[4] * dy);
                            o[2] += scalar_t(0.5) * v_sig * dx * dx;
                            o[3] += v_sig * dx * dy;
                            o[4] += scalar_t(0.5) * v_sig * dy * dy;
                            o[5] += vis * v_al;
                        }
                    }
                }
            }
        }
    }
}

void check_inputs(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                  const at::Tensor& opacities, const at::Tensor& offsets, const at::Tensor& ids) {
    for (const auto* t : {&means2d, &conics, &colors, &opacities, &offsets, &ids}) {
        TORCH_CHECK(t->device().is_cpu() && t->is_contiguous(), "composite_cpu: CPU contiguous tensors expected");
    }
    TORCH_CHECK(offsets.scalar_type() == at::kLong && ids.scalar_type() == at::kLong, "int64 bins expected");
    TORCH_CHECK(conics.scalar_type() == means2d.scalar_type() && colors.scalar_type() == means2d.scalar_type() &&
                    opacities.scalar_type() == means2d.scalar_type(),
                "composite_cpu: one floating dtype expected");
}

}  // namespace

std::vector<at::Tensor> composite_forward(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                const at::Tensor& opacities, const at::Tensor& offsets, const at::Tensor& ids,
                                int64_t n_images, int64_t height, int64_t width, int64_t tile_size) {
    check_inputs(means2d, conics, colors, opacities, offsets, ids);
    const Grid grid(n_images, height, width, tile_size);
    TORCH_CHECK(offsets.numel() == grid.n_tiles() + 1, "composite_cpu: offsets size mismatch");
    const int64_t D = colors.size(1);
    auto fg = at::zeros({n_images, height, width, D}, colors.options());
    auto alpha = at::zeros({n_images, height, width, 1}, colors.options());
    auto n_proc = at::zeros({n_images, height, width}, colors.options().dtype(at::kInt));
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "composite_cpu_forward", [&] {
        forward_kernel<scalar_t>(grid, means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                                 colors.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
                                 offsets.data_ptr<int64_t>(), ids.data_ptr<int64_t>(), D,
                                 fg.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(), n_proc.data_ptr<int32_t>());
    });
    return {fg, alpha, n_proc};
}

at::Tensor composite_backward(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                    const at::Tensor& opacities, const at::Tensor& offsets, const at::Tensor& ids,
                    int64_t n_images, int64_t height, int64_t width, int64_t tile_size, const at::Tensor& alphas,
                    const at::Tensor& n_proc, const at::Tensor& v_fg, const at::Tensor& v_alpha) {
    check_inputs(means2d, conics, colors, opacities, offsets, ids);
    TORCH_CHECK(alphas.is_contiguous() && n_proc.is_contiguous() && v_fg.is_contiguous() && v_alpha.is_contiguous(),
                "composite_cpu: contiguous image tensors expected");
    TORCH_CHECK(n_proc.scalar_type() == at::kInt, "composite_cpu: int32 n_proc expected");
    const Grid grid(n_images, height, width, tile_size);
    const int64_t D = colors.size(1);
    auto grads = at::zeros({ids.numel(), 6 + D}, colors.options());
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "composite_cpu_backward", [&] {
        backward_kernel<scalar_t>(grid, means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                                  colors.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
                                  offsets.data_ptr<int64_t>(), ids.data_ptr<int64_t>(), D,
                                  alphas.data_ptr<scalar_t>(), n_proc.data_ptr<int32_t>(),
                                  v_fg.data_ptr<scalar_t>(), v_alpha.data_ptr<scalar_t>(), grads.data_ptr<scalar_t>());
    });
    return grads;
}
