// The Python module swapkern._C: importing it loads this library, which runs the op registrations. It holds only
// the build's description, read by swapkern/_backend.py to tell whether this build fits the running torch. Python
// limited API only (Py_LIMITED_API 3.10 in the stable build): one binary for every CPython from 3.10 on.
#include <Python.h>

#include <cstdint>
#include <cstdio>

#ifdef SWAPKERN_WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION: the CUDA runtime this library links
#endif

#define SK_STRINGIZE2(x) #x
#define SK_STRINGIZE(x) SK_STRINGIZE2(x)

namespace {

int add_build_info(PyObject* m) {
#ifdef SWAPKERN_TORCH_VERSION
  const char* torch_version = SK_STRINGIZE(SWAPKERN_TORCH_VERSION);  // the torch whose headers built it
#else
  const char* torch_version = "unknown";
#endif
#ifdef TORCH_TARGET_VERSION
  // Stable ABI: the oldest torch it runs on, from TORCH_TARGET_VERSION ([major][minor][patch][abi tag]).
  const char* abi = "stable";
  char target[16];
  std::snprintf(target, sizeof(target), "%d.%d", static_cast<int>((TORCH_TARGET_VERSION >> 56) & 0xFF),
                static_cast<int>((TORCH_TARGET_VERSION >> 48) & 0xFF));
#else
  // Legacy: the same sources built for the torch at hand only (SWAPKERN_LEGACY_ABI=1).
  const char* abi = "legacy";
  const char* target = torch_version;
#endif
#ifdef SWAPKERN_WITH_CUDA
  char cuda_version[16];
  std::snprintf(cuda_version, sizeof(cuda_version), "%d.%d", CUDART_VERSION / 1000, (CUDART_VERSION % 1000) / 10);
  const int cuda = 1;
#else
  const char* cuda_version = "";
  const int cuda = 0;
#endif
  if (PyModule_AddStringConstant(m, "torch_version", torch_version) < 0) return -1;
  if (PyModule_AddStringConstant(m, "target_version", target) < 0) return -1;
  if (PyModule_AddStringConstant(m, "abi", abi) < 0) return -1;
  if (PyModule_AddIntConstant(m, "cuda", cuda) < 0) return -1;
  if (PyModule_AddStringConstant(m, "cuda_version", cuda_version) < 0) return -1;
  return 0;
}

}  // namespace

PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "swapkern's compiled ops (see torch.ops.swapkern)",
                                      -1, nullptr};
  PyObject* m = PyModule_Create(&module);
  if (m != nullptr && add_build_info(m) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
