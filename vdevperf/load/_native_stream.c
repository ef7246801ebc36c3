/* The native stream loops (issue 17): see vdevperf/load/native.py. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyMethodDef methods[] = {
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_stream", "Native stream loops.", -1, methods,
};

PyMODINIT_FUNC PyInit__native_stream(void) { return PyModule_Create(&module); }
