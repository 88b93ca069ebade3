/*
 * zygote.c - the Python runtime as a native function (spate.h), so that a
 * python3 function's instances are forked from a zygote that has started
 * the interpreter and imported the handler once: spate-runner loads this
 * object in the version's sandbox, spate_preload imports the handler (the
 * bootstrap beside it, in LAMBDA_RUNTIME_DIR, does the work: zygote_load),
 * and each instance, forked and in its own sandbox as any native one, calls
 * zygote_invoke per invocation. The user's code is in SPATE_PYTHON_TASK.
 *
 * Threads the module started at import time do not survive the fork (only
 * the forking thread does): such modules opt out with SPATE_PYTHON_ZYGOTE=0
 * (docs/functions.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spate.h"

static PyObject *invoke_fn;
static char load_error[4000];

/* The text of the pending Python exception, "Type: message". */
static void exception_text(char *out, size_t cap)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *s = value ? PyObject_Str(value) : NULL;
    const char *name = type ? ((PyTypeObject *)type)->tp_name : "Error";
    const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
    snprintf(out, cap, "%s: %s", name, msg ? msg : "");
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
}

/* Why spate_preload failed, for the deploy's answer (spate-runner asks). */
const char *spate_preload_error(void)
{
    return load_error;
}

int spate_preload(void)
{
    /* Extension modules (_json, _sqlite3) resolve the interpreter's symbols
     * globally, and this object was loaded RTLD_LOCAL. */
    Dl_info lib;
    if (dladdr((void *)(uintptr_t)Py_InitializeFromConfig, &lib) && lib.dli_fname)
        dlopen(lib.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    const char *dir = getenv("LAMBDA_RUNTIME_DIR"), *task = getenv("SPATE_PYTHON_TASK");
    if (!dir || !task) {
        snprintf(load_error, sizeof load_error,
                 "the Python zygote has no runtime or code directory");
        return 1;
    }
    if (chdir(task) != 0) {
        snprintf(load_error, sizeof load_error, "cannot enter '%s'", task);
        return 1;
    }
    /* LAMBDA_TASK_ROOT is the code, as for the bootstrap (spate-runner set
     * it to /var/task, which holds this object only). */
    setenv("LAMBDA_TASK_ROOT", task, 1);
    /* As the bootstrap runs: python3 -I (no PYTHON* variables, no user site). */
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.install_signal_handlers = 0;
    PyStatus st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        snprintf(load_error, sizeof load_error, "cannot start Python: %s",
                 st.err_msg ? st.err_msg : "unknown error");
        return 1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/bootstrap", dir);
    PyObject *mod = NULL, *load = NULL, *res = NULL;
    PyObject *m = PyImport_ImportModule("importlib.machinery");
    PyObject *loader =
        m ? PyObject_CallMethod(m, "SourceFileLoader", "ss", "spate_bootstrap", path) : NULL;
    if (loader) mod = PyObject_CallMethod(loader, "load_module", "s", "spate_bootstrap");
    if (mod) load = PyObject_GetAttrString(mod, "zygote_load");
    if (load) res = PyObject_CallNoArgs(load);
    if (mod) invoke_fn = PyObject_GetAttrString(mod, "zygote_invoke");
    if (!res || !invoke_fn) {
        exception_text(load_error, sizeof load_error);
    } else if (PyUnicode_Check(res) && PyUnicode_GetLength(res) > 0) {
        snprintf(load_error, sizeof load_error, "%s", PyUnicode_AsUTF8(res));
    }
    Py_XDECREF(m);
    Py_XDECREF(loader);
    Py_XDECREF(mod);
    Py_XDECREF(load);
    Py_XDECREF(res);
    return load_error[0] ? 1 : 0;
}

int spate_init(void)
{
    /* The fork happened under spate-runner, not os.fork: tell Python. */
    PyOS_AfterFork_Child();
    return 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    static char arn[256];
    if (!arn[0]) {
        const char *a = getenv("SPATE_PYTHON_ARN");
        snprintf(arn, sizeof arn, "%s", a ? a : "");
    }
    PyObject *r = PyObject_CallFunction(invoke_fn, "y#sLs", (const char *)req->payload,
                                        (Py_ssize_t)req->payload_len, req->request_id,
                                        (long long)req->deadline_ms, arn);
    char why[4000];
    if (!r) {
        exception_text(why, sizeof why);
        spate_fail(res, why);
        return 1;
    }
    int ok = PyTuple_Check(r) && PyTuple_Size(r) == 2 && PyObject_IsTrue(PyTuple_GetItem(r, 0));
    PyObject *out = PyTuple_Check(r) && PyTuple_Size(r) == 2 ? PyTuple_GetItem(r, 1) : NULL;
    int rc = 0;
    if (ok && out && PyBytes_Check(out)) {
        if (spate_write(res, PyBytes_AsString(out), (size_t)PyBytes_Size(out)) != 0) {
            spate_fail(res, "the response is over the limit of 6 MiB");
            rc = 1;
        }
    } else {
        const char *text = out && PyUnicode_Check(out) ? PyUnicode_AsUTF8(out) : NULL;
        spate_fail(res, text ? text : "Runtime.Error: the runtime answered nothing");
        rc = 1;
    }
    Py_DECREF(r);
    return rc;
}
