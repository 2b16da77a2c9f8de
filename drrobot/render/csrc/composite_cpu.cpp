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

template <typename scalar_t>
void forward_kernel(const Grid& grid, const scalar_t* means2d, const scalar_t* conics,
                    const scalar_t* colors, const scalar_t* opacities, const int64_t* offsets,
                    const int64_t* ids, int64_t D, scalar_t* out_fg, scalar_t* out_alpha,
                    int32_t* out_n) {
    const int64_t n_tiles = grid.n_tiles(), ts = grid.tile_size;
#pragma omp parallel
    {
        TileCache<scalar_t> cache;
        std::vector<scalar_t> acc(D);
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; ++tile) {
            const int64_t begin = offsets[tile], end = offsets[tile + 1], K = end - begin;
            if (K == 0) continue;  // outputs are pre-filled (fg 0, alpha 0, n 0)
            cache.load(means2d, conics, colors, opacities, ids, begin, end, D);
            const int64_t image = tile / (grid.tile_width * grid.tile_height);
            const int64_t t = tile % (grid.tile_width * grid.tile_height);
            const int64_t y0 = (t / grid.tile_width) * ts, x0 = (t % grid.tile_width) * ts;
            for (int64_t y = y0; y < std::min(y0 + ts, grid.height); ++y) {
                for (int64_t x = x0; x < std::min(x0 + ts, grid.width); ++x) {
                    const scalar_t px = scalar_t(x) + scalar_t(0.5), py = scalar_t(y) + scalar_t(0.5);
                    std::fill(acc.begin(), acc.end(), scalar_t(0));
                    scalar_t T = 1;
                    int64_t k = 0;
                    for (; k < K; ++k) {
                        const scalar_t* r = &cache.g[k * 7];
                        scalar_t dx, dy, sigma, vis, alpha;
                        if (!eval_alpha(r, px, py, dx, dy, sigma, vis, alpha)) continue;
                        const scalar_t next_T = T * (1 - alpha);
                        if (next_T <= scalar_t(kMinTransmittance)) break;
                        const scalar_t w = alpha * T;
                        const scalar_t* c = &cache.col[k * D];
                        for (int64_t d = 0; d < D; ++d) acc[d] += w * c[d];
                        T = next_T;
                    }
                    const int64_t pix = (image * grid.height + y) * grid.width + x;
                    std::copy(acc.begin(), acc.end(), out_fg + pix * D);
                    out_alpha[pix] = 1 - T;
                    out_n[pix] = static_cast<int32_t>(k);
                }
            }
        }
    }
}

// Writes per-intersection gradients [n_isects, 6 + D]: v_mean2d (2), v_conic (3), v_opacity, v_color (D).
template <typename scalar_t>
void backward_kernel(const Grid& grid, const scalar_t* means2d, const scalar_t* conics,
                     const scalar_t* colors, const scalar_t* opacities, const int64_t* offsets,
                     const int64_t* ids, int64_t D, const scalar_t* alphas, const int32_t* n_proc,
                     const scalar_t* v_fg, const scalar_t* v_alpha, scalar_t* grads) {
    const int64_t n_tiles = grid.n_tiles(), ts = grid.tile_size, G = 6 + D;
#pragma omp parallel
    {
        TileCache<scalar_t> cache;
        std::vector<scalar_t> behind(D);
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; ++tile) {
            const int64_t begin = offsets[tile], end = offsets[tile + 1], K = end - begin;
            if (K == 0) continue;
            cache.load(means2d, conics, colors, opacities, ids, begin, end, D);
            scalar_t* out = grads + begin * G;  // this tile's rows, written by this thread only
            const int64_t image = tile / (grid.tile_width * grid.tile_height);
            const int64_t t = tile % (grid.tile_width * grid.tile_height);
            const int64_t y0 = (t / grid.tile_width) * ts, x0 = (t % grid.tile_width) * ts;
            for (int64_t y = y0; y < std::min(y0 + ts, grid.height); ++y) {
                for (int64_t x = x0; x < std::min(x0 + ts, grid.width); ++x) {
                    const int64_t pix = (image * grid.height + y) * grid.width + x;
                    const scalar_t px = scalar_t(x) + scalar_t(0.5), py = scalar_t(y) + scalar_t(0.5);
                    const scalar_t* vc = v_fg + pix * D;
                    const scalar_t T_final = 1 - alphas[pix], v_a_out = v_alpha[pix];
                    scalar_t T = T_final;
                    std::fill(behind.begin(), behind.end(), scalar_t(0));
                    for (int64_t k = int64_t(n_proc[pix]) - 1; k >= 0; --k) {
                        const scalar_t* r = &cache.g[k * 7];
                        scalar_t dx, dy, sigma, vis, alpha;
                        if (!eval_alpha(r, px, py, dx, dy, sigma, vis, alpha)) continue;
                        const scalar_t ra = 1 / (1 - alpha);
                        T *= ra;  // transmittance in front of k
                        const scalar_t w = alpha * T;
                        const scalar_t* c = &cache.col[k * D];
                        scalar_t* o = out + k * G;
                        scalar_t v_al = T_final * ra * v_a_out;
                        for (int64_t d = 0; d < D; ++d) {
                            v_al += (c[d] * T - behind[d] * ra) * vc[d];
                            o[6 + d] += w * vc[d];
                            behind[d] += c[d] * w;
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
