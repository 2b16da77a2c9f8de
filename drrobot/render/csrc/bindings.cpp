// Python bindings of the CPU rendering kernels (one extension module, built by drrobot/render/extension.py).
#include "render_cpu.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &composite_forward, "composite forward (CPU)");
    m.def("backward", &composite_backward, "composite backward (CPU)");
    m.def("project_forward", &project_forward, "EWA projection forward (CPU)");
    m.def("project_backward", &project_backward, "EWA projection backward (CPU)");
}
