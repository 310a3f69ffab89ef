// An empty Python module: importing swapkern._C loads this library, which runs the op registrations.
#include <Python.h>

PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "swapkern's compiled ops (see torch.ops.swapkern)",
                                      -1, nullptr};
  return PyModule_Create(&module);
}
