// CPU binning of projected Gaussians into screen tiles, each tile's list front to back (no gradients).
// The result is tiles.py's `isect_tiles` torch twin's exactly (which the tests compare against): the same tile
// rectangles, lists ordered by tile, then depth, then Gaussian index (gsplat's stable sort). Instead of sorting all
// intersections, each image's visible Gaussians are sorted by depth once and dealt into their tiles in that order.
#include "render_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

struct Rect {
    int64_t x0, y0, nx, ny;  // first tile and extent; nx * ny tiles (0 when culled)
};

template <typename scalar_t>
Rect tile_rect(const scalar_t* mean, const int32_t* radius, int64_t tile_size, int64_t tw, int64_t th) {
    if (radius[0] <= 0 || radius[1] <= 0) return Rect{0, 0, 0, 0};
    const scalar_t ts = scalar_t(tile_size);
    const scalar_t cx = mean[0] / ts, cy = mean[1] / ts;
    const scalar_t rx = scalar_t(radius[0]) / ts, ry = scalar_t(radius[1]) / ts;
    auto clampi = [](scalar_t v, int64_t limit) {
        return std::min(std::max(v, scalar_t(0)), scalar_t(limit));
    };
    const int64_t x0 = int64_t(clampi(std::floor(cx - rx), tw)), x1 = int64_t(clampi(std::ceil(cx + rx), tw));
    const int64_t y0 = int64_t(clampi(std::floor(cy - ry), th)), y1 = int64_t(clampi(std::ceil(cy + ry), th));
    return Rect{x0, y0, x1 - x0, y1 - y0};
}

template <typename scalar_t>
struct Entry {
    scalar_t depth;
    int64_t id;
    bool operator<(const Entry& o) const { return depth < o.depth || (depth == o.depth && id < o.id); }
};

template <typename scalar_t>
std::vector<at::Tensor> isect(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths,
                              int64_t width, int64_t height, int64_t tile_size) {
    const int64_t I = depths.size(0), N = depths.size(1);
    const int64_t tw = (width + tile_size - 1) / tile_size, th = (height + tile_size - 1) / tile_size;
    const int64_t n_tiles = I * tw * th;
    const scalar_t* m = means2d.data_ptr<scalar_t>();
    const int32_t* r = radii.data_ptr<int32_t>();
    const scalar_t* d = depths.data_ptr<scalar_t>();
    std::vector<Rect> rects(static_cast<size_t>(I * N));
    auto tiles_per_gauss = at::empty({I, N}, depths.options().dtype(at::kLong));
    int64_t* per_gauss = tiles_per_gauss.data_ptr<int64_t>();
    for (int64_t k = 0; k < I * N; ++k) {
        rects[k] = tile_rect(m + k * 2, r + k * 2, tile_size, tw, th);
        per_gauss[k] = rects[k].nx * rects[k].ny;
    }
    auto offsets = at::zeros({n_tiles + 1}, depths.options().dtype(at::kLong));
    int64_t* off = offsets.data_ptr<int64_t>();
    std::vector<std::vector<Entry<scalar_t>>> order(static_cast<size_t>(I));
    for (int64_t i = 0; i < I; ++i) {
        auto& list = order[i];
        for (int64_t n = 0; n < N; ++n) {
            const Rect& q = rects[i * N + n];
            if (q.nx * q.ny == 0) continue;
            list.push_back(Entry<scalar_t>{d[i * N + n], i * N + n});
            for (int64_t y = q.y0; y < q.y0 + q.ny; ++y)
                for (int64_t x = q.x0; x < q.x0 + q.nx; ++x) off[(i * th + y) * tw + x + 1] += 1;
        }
        std::sort(list.begin(), list.end());
    }
    for (int64_t t = 0; t < n_tiles; ++t) off[t + 1] += off[t];
    auto flatten_ids = at::empty({off[n_tiles]}, depths.options().dtype(at::kLong));
    int64_t* ids = flatten_ids.data_ptr<int64_t>();
    std::vector<int64_t> cursor(off, off + n_tiles);
    for (int64_t i = 0; i < I; ++i)
        for (const auto& e : order[i]) {
            const Rect& q = rects[e.id];
            for (int64_t y = q.y0; y < q.y0 + q.ny; ++y)
                for (int64_t x = q.x0; x < q.x0 + q.nx; ++x) ids[cursor[(i * th + y) * tw + x]++] = e.id;
        }
    return {offsets, flatten_ids, tiles_per_gauss};
}

}  // namespace

std::vector<at::Tensor> isect_tiles_cpu(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths,
                                        int64_t width, int64_t height, int64_t tile_size) {
    TORCH_CHECK(means2d.device().is_cpu() && means2d.is_contiguous() && radii.is_contiguous() && depths.is_contiguous(),
                "tiles_cpu: CPU contiguous tensors expected");
    TORCH_CHECK(means2d.scalar_type() == depths.scalar_type() && radii.scalar_type() == at::kInt,
                "tiles_cpu: means2d and depths of one floating dtype, radii int32 expected");
    TORCH_CHECK(depths.dim() == 2 && means2d.dim() == 3 && radii.dim() == 3 && means2d.size(2) == 2 &&
                    radii.size(2) == 2 && means2d.size(0) == depths.size(0) && means2d.size(1) == depths.size(1) &&
                    radii.size(0) == depths.size(0) && radii.size(1) == depths.size(1),
                "tiles_cpu: means2d [I, N, 2], radii [I, N, 2], depths [I, N] expected");
    TORCH_CHECK(tile_size > 0 && width > 0 && height > 0, "tiles_cpu: positive sizes expected");
    std::vector<at::Tensor> out;
    AT_DISPATCH_FLOATING_TYPES(depths.scalar_type(), "tiles_cpu", [&] {
        out = isect<scalar_t>(means2d, radii, depths, width, height, tile_size);
    });
    return out;
}
