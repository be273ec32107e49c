"""The engine's threads: single-threaded BLAS calls run from a small pool of Python threads.

Why (profile of ``make bench`` on a shared 2-core machine, issue "Performance"): numpy's OpenBLAS
splits every product statically over its threads and each call ends in a barrier. When another
process holds a core, every call waits for the descheduled half, and an engine that issues many
mid-sized products (one per patch block, LSTM step or conv layer) loses 3-10x, while TensorFlow's
work-stealing pool loses little. So the engine makes its own split instead: work is cut into
blocks that the pool hands out dynamically (a thread that is descheduled simply takes fewer
blocks), and each block's product runs with BLAS limited to one thread. numpy releases the GIL in
copies and products, so two blocks really run at once.

How work is cut never depends on the pool size or the load, only on the shapes: a block's
product may round differently from one whole product (BLAS picks its kernels by size), but a
given input gives the same numbers on every run and with any number of threads.

BLAS is reached through ctypes (the library numpy loaded, found in /proc/self/maps). When it
cannot be found (another platform or BLAS), the limit is a no-op and the pool still splits.
``SCRATCH_NUM_THREADS`` sets the pool size (default: the CPUs this process may run on).
The limit is process-wide while it is held: do not run other BLAS work in other threads meanwhile.
"""

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")

_lock = threading.Lock()
_state = {"lib": None, "searched": False, "depth": 0, "saved": None, "pool": None, "pool_size": 0}


def _loaded_openblas():
    """(path, set, get) of the OpenBLAS numpy uses, or None. numpy's own copy is preferred over
    others a process may hold (scipy ships a second one with its own threads)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths, key=lambda p: "numpy" not in p):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, s) for s in _SETTERS if hasattr(lib, s)), None)
        getter = next((getattr(lib, g) for g in _GETTERS if hasattr(lib, g)), None)
        if setter is not None and getter is not None:
            getter.restype = ctypes.c_int
            return path, setter, getter
    return None


def blas_library():
    """Path of the BLAS whose threads the engine controls, or None."""
    if not _state["searched"]:
        _state["lib"], _state["searched"] = _loaded_openblas(), True
    return None if _state["lib"] is None else _state["lib"][0]


# cblas_?gemm of the ILP64 builds numpy ships (64-bit integer arguments): C = A @ B + beta * C.
_GEMMS = {np.dtype(np.float32): ("scipy_cblas_sgemm64_", "cblas_sgemm64_", ctypes.c_float),
          np.dtype(np.float64): ("scipy_cblas_dgemm64_", "cblas_dgemm64_", ctypes.c_double)}
_ROW_MAJOR, _NO_TRANS = 101, 111


def blas_gemm(dtype):
    """``gemm(m, n, k, a, lda, b, ldb, c, ldc, beta)`` for ``dtype``: ``C = A @ B + beta * C`` on
    row-major matrices given by their addresses (``arr.ctypes.data``) and row strides in elements,
    straight from the BLAS numpy uses; None when that BLAS or dtype has none we know.

    numpy's ``matmul`` cannot add into its output; this can, so a sum of products (one per
    convolution tap) needs no temporary and no extra pass. The caller guarantees that every
    matrix lies inside a live, C-contiguous array of ``dtype``: nothing is checked here.
    """
    dtype = np.dtype(dtype)
    if dtype not in _GEMMS or blas_library() is None:
        return None
    key = ("gemm", dtype)
    if key not in _state:
        names, real = _GEMMS[dtype][:2], _GEMMS[dtype][2]
        lib = ctypes.CDLL(_state["lib"][0])
        fn = next((getattr(lib, n) for n in names if hasattr(lib, n)), None)
        if fn is not None:
            i64 = ctypes.c_int64
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, real, ctypes.c_void_p, i64,
                           ctypes.c_void_p, i64, real, ctypes.c_void_p, i64]
            fn.restype = None
        _state[key] = fn
    fn = _state[key]
    if fn is None:
        return None

    def gemm(m, n, k, a, lda, b, ldb, c, ldc, beta):
        fn(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
    return gemm


def blas_threads():
    """BLAS's current thread count (None when unknown)."""
    if blas_library() is None:
        return None
    return int(_state["lib"][2]())


@contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread inside the block (reentrant; the previous count is restored)."""
    if blas_library() is None:
        yield
        return
    with _lock:
        if _state["depth"] == 0:
            _state["saved"] = int(_state["lib"][2]())
            if _state["saved"] != 1:
                _state["lib"][1](1)
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0 and _state["saved"] not in (None, 1):
                _state["lib"][1](_state["saved"])


def workers():
    """Pool size: ``SCRATCH_NUM_THREADS`` or the CPUs this process may use."""
    env = os.environ.get("SCRATCH_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if "cpus" not in _state:   # asking the kernel costs a system call: once per process
        try:
            _state["cpus"] = max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            _state["cpus"] = max(1, os.cpu_count() or 1)
    return _state["cpus"]


def _pool(n):
    if _state["pool"] is None or _state["pool_size"] != n:
        _state["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="scratch")
        _state["pool_size"] = n
    return _state["pool"]


# Work below this many multiply-adds runs inline: handing blocks to pool threads costs a thread
# wake-up each (about a millisecond on a busy machine, bench profile), more than it saves.
MIN_PARALLEL_COST = 20_000_000


def run_blocks(fn, items, cost=None):
    """``fn(item)`` for every item, spread over the pool with single-threaded BLAS; returns the results
    in order. Runs inline when there is one item or one worker, when the whole work ``cost``
    (multiply-adds) is below ``MIN_PARALLEL_COST``, or when called from a pool thread."""
    items = list(items)
    n = workers()
    small = cost is not None and cost < MIN_PARALLEL_COST
    with single_threaded_blas():
        if n == 1 or small or len(items) < 2 or threading.current_thread().name.startswith("scratch"):
            return [fn(item) for item in items]
        return list(_pool(n).map(fn, items))


def row_chunks(rows, cost_per_row, min_cost=2_000_000, max_chunks=8):
    """Split ``rows`` into contiguous slices for the pool: up to ``max_chunks`` (several per worker,
    for dynamic balance), none cheaper than ``min_cost`` multiply-adds so the hand-over stays
    negligible. The split depends on the shapes only (see the module docstring)."""
    if rows <= 0:
        return [slice(0, 0)]
    count = max(1, min(max_chunks, rows, int(rows * cost_per_row // max(1, min_cost))))
    step = -(-rows // count)
    return [slice(s, min(rows, s + step)) for s in range(0, rows, step)]


def matmul(a, b, out=None, finish=None):
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, F), split over the pool; ``finish(part, cols)``,
    when given, runs in place on each finished part of the output (its columns ``cols``) while it
    is still in cache (a bias). Work below ``MIN_PARALLEL_COST`` is one product.

    The split is along the output axis that costs the least re-packing: BLAS packs the operand that
    is not split once per part, so rows are split when ``b`` is the smaller operand (K*F <= M*K,
    conv-like products) and columns otherwise (Dense on a few hundred rows: 8 row parts re-packed
    a 4 MB kernel 8 times; 4 column parts run 1.3-1.5x faster, bench profile on 512x1024x1024)."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    m, k = a.shape
    f = b.shape[1]
    if m * k * f < MIN_PARALLEL_COST:
        parts = [(slice(None), slice(None))]
    elif k * f <= m * k:
        parts = [(r, slice(None)) for r in row_chunks(m, k * f)]
    else:
        parts = [(slice(None), c) for c in column_chunks(f, m * k)]

    def part(p):
        rows, cols = p
        np.matmul(a[rows], b[:, cols], out=out[rows, cols])
        if finish is not None:
            finish(out[rows, cols], cols)

    run_blocks(part, parts, cost=m * k * f)
    return out


def column_chunks(cols, cost_per_col, min_cost=2_000_000, max_chunks=4):
    """Like ``row_chunks`` for the columns of a product, in multiples of 16 (whole SIMD registers)."""
    if cols <= 16:
        return [slice(0, cols)]
    count = max(1, min(max_chunks, cols // 16, int(cols * cost_per_col // max(1, min_cost))))
    step = -(-cols // count)
    step = -(-step // 16) * 16
    return [slice(s, min(cols, s + step)) for s in range(0, cols, step)]


def rowwise(fn, x, cost_per_element=10, chunk_bytes=2**20, into=None, out=None):
    """``fn(x)`` for an ``fn`` that treats the rows of ``x`` (its leading axes) independently (an
    element-wise activation), in chunks of rows over the pool. With ``into(chunk, out)``, which
    writes ``fn(chunk)`` into ``out``, no chunk needs a temporary (the result has x's dtype).
    ``cost_per_element`` is in the multiply-adds of ``run_blocks`` (an element-wise pass costs
    ~0.2 ns an element, as ~10 of a product's multiply-adds). The result is the same however the
    rows are cut. ``out`` (with ``into``): the array to write the result into, which may be ``x``
    itself when ``into`` reads each value before it writes it."""
    cost = x.size * cost_per_element
    if x.ndim == 0 or x.size == 0 or (cost < MIN_PARALLEL_COST and (into is None or out is None)):
        return fn(x)
    rows = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(-1, 1)
    step = max(1, chunk_bytes // max(1, rows.shape[1] * x.itemsize))
    parts = [slice(s, min(rows.shape[0], s + step)) for s in range(0, rows.shape[0], step)]
    if out is not None and not (out.flags.c_contiguous and out.flags.writeable and out.shape == x.shape):
        out = None   # only an array the rows can be written into in place
    if into is not None:
        result = np.empty(x.shape, dtype=x.dtype) if out is None else out   # owns its memory: a later
        flat = result.reshape(rows.shape)                                    # layer may write into it
        run_blocks(lambda p: into(rows[p], flat[p]), parts, cost=cost)
        return result
    first = fn(rows[parts[0]])
    result = np.empty(x.shape[:-1] + first.shape[1:] if x.ndim > 1 else x.shape, dtype=first.dtype)
    flat = result.reshape(rows.shape[0], -1)   # a row may change length (glu halves it)
    flat[parts[0]] = first

    def part(p):
        flat[p] = fn(rows[p])

    run_blocks(part, parts[1:], cost=cost)
    return result
