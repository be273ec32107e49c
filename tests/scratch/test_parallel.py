"""scratch.parallel: BLAS thread control, the block pool, and row-split products equal to one product."""

import threading

import numpy as np
import pytest

from parity.tolerance import assert_close
from scratch import parallel
from scratch.layers import windows
from scratch.layers.conv import Conv2D


def test_single_threaded_blas_limits_and_restores():
    if parallel.blas_library() is None:
        pytest.skip("no OpenBLAS found in this process")
    before = parallel.blas_threads()
    with parallel.single_threaded_blas():
        assert parallel.blas_threads() == 1
        with parallel.single_threaded_blas():   # reentrant
            assert parallel.blas_threads() == 1
        assert parallel.blas_threads() == 1
    assert parallel.blas_threads() == before


def test_single_threaded_blas_restores_after_an_error():
    before = parallel.blas_threads()
    with pytest.raises(ZeroDivisionError):
        with parallel.single_threaded_blas():
            1 / 0
    assert parallel.blas_threads() == before


def test_run_blocks_keeps_order_and_uses_the_pool(monkeypatch):
    monkeypatch.setenv("SCRATCH_NUM_THREADS", "2")
    names = set()

    def work(i):
        names.add(threading.current_thread().name.startswith("scratch"))
        return i * i

    assert parallel.run_blocks(work, range(20)) == [i * i for i in range(20)]
    assert True in names


def test_run_blocks_inline_when_the_work_is_small(monkeypatch):
    monkeypatch.setenv("SCRATCH_NUM_THREADS", "2")
    seen = set()
    parallel.run_blocks(lambda i: seen.add(threading.current_thread().name), range(8),
                        cost=parallel.MIN_PARALLEL_COST - 1)
    assert seen == {threading.current_thread().name}


def test_run_blocks_inline_with_one_worker(monkeypatch):
    monkeypatch.setenv("SCRATCH_NUM_THREADS", "1")
    seen = []
    assert parallel.run_blocks(lambda i: seen.append(threading.current_thread().name) or i, [1, 2, 3]) == [1, 2, 3]
    assert not any(n.startswith("scratch") for n in seen)


def test_run_blocks_raises_what_a_block_raises(monkeypatch):
    monkeypatch.setenv("SCRATCH_NUM_THREADS", "2")

    def work(i):
        if i == 3:
            raise ValueError("block 3")
        return i

    with pytest.raises(ValueError, match="block 3"):
        parallel.run_blocks(work, range(6))


@pytest.mark.parametrize("rows", [0, 1, 7, 1000])
def test_row_chunks_cover_every_row_once(rows):
    chunks = parallel.row_chunks(rows, 10_000)
    covered = [r for s in chunks for r in range(rows)[s]]
    assert covered == list(range(rows))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_matmul_equals_one_product_exactly(dtype, monkeypatch):
    monkeypatch.setenv("SCRATCH_NUM_THREADS", "2")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1037, 300)).astype(dtype)
    b = rng.normal(size=(300, 129)).astype(dtype)
    assert len(parallel.row_chunks(*a.shape[:1], a.shape[1] * b.shape[1])) > 1
    np.testing.assert_array_equal(parallel.matmul(a, b), a @ b)


def test_conv_forward_is_the_same_for_any_pool_size(monkeypatch):
    # The pool changes who computes a block, never the blocks: identical numbers with 1 or 2 workers.
    rng = np.random.default_rng(1)
    layer = Conv2D(6, 3, padding="same", activation="relu")
    x = rng.normal(size=(3, 11, 9, 5)).astype("float32")
    layer.build(x.shape, rng=rng)
    whole = layer.forward(x).copy()
    monkeypatch.setattr(windows, "FORWARD_BLOCK_BYTES", 9 * 45 * 4 * 2)   # two output rows per block
    outs = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("SCRATCH_NUM_THREADS", workers)
        windows.reset_peak_patch_bytes()
        outs[workers] = layer.forward(x).copy()
        assert 0 < windows.peak_patch_bytes() <= windows.FORWARD_BLOCK_BYTES
    np.testing.assert_array_equal(outs["1"], outs["2"])
    # Smaller blocks may round differently from one block, within the reduction's rounding.
    assert_close(outs["2"], whole, kind="forward", label="Conv2D in 2-row blocks", reduction=45)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_column_split_matmul_equals_one_product_exactly(dtype, monkeypatch):
    # A wide product (Dense on few rows) is split by columns: each part is the same sum, bit for bit.
    monkeypatch.setenv("SCRATCH_NUM_THREADS", "2")
    rng = np.random.default_rng(2)
    a = rng.normal(size=(64, 700)).astype(dtype)
    b = rng.normal(size=(700, 1000)).astype(dtype)
    assert len(parallel.column_chunks(b.shape[1], a.shape[0] * a.shape[1])) > 1
    finished = []
    out = parallel.matmul(a, b, finish=lambda part, cols: finished.append(cols))
    with parallel.single_threaded_blas():   # (2-thread BLAS splits this product its own way)
        whole = a @ b
    np.testing.assert_array_equal(out, whole)
    assert sorted(c.start for c in finished) == [c.start for c in parallel.column_chunks(1000, 64 * 700)]


@pytest.mark.parametrize("cols", [1, 15, 16, 17, 1000, 1023])
def test_column_chunks_cover_every_column_once(cols):
    chunks = parallel.column_chunks(cols, 100_000)
    assert [c for s in chunks for c in range(cols)[s]] == list(range(cols))


@pytest.mark.parametrize("cls", ["MaxPooling2D", "AveragePooling2D"])
def test_pooling_forward_is_the_same_for_any_pool_size(cls, monkeypatch):
    from scratch.layers import pooling

    monkeypatch.setattr(pooling, "BLOCK_BYTES", 7 * 16 * 4)            # one output row per block
    monkeypatch.setattr(parallel, "MIN_PARALLEL_COST", 0)
    layer = getattr(pooling, cls)(pool_size=3, strides=2, padding="same")
    x = np.random.default_rng(5).normal(size=(4, 13, 14, 16)).astype("float32")
    outs = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("SCRATCH_NUM_THREADS", workers)
        outs[workers] = layer.forward(x).copy()
    np.testing.assert_array_equal(outs["1"], outs["2"])
    monkeypatch.setattr(pooling, "BLOCK_BYTES", 2**30)                  # one block
    np.testing.assert_array_equal(layer.forward(x), outs["2"])


@pytest.mark.parametrize("shape", [(5, 300, 7), (2100,), (3, 1, 40000)])
def test_rowwise_is_the_function_on_the_whole_array(shape, monkeypatch):
    monkeypatch.setenv("SCRATCH_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "MIN_PARALLEL_COST", 0)
    x = np.random.default_rng(6).normal(size=shape).astype("float32")
    out = parallel.rowwise(lambda v: np.maximum(v, np.float32(0)) * 2, x, chunk_bytes=64)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out, np.maximum(x, 0) * 2)
    into = parallel.rowwise(None, x, chunk_bytes=64, into=lambda v, o: np.multiply(np.maximum(v, 0), 2, out=o))
    np.testing.assert_array_equal(into, out)


@pytest.mark.parametrize("config", [{}, {"max_value": 6.0}, {"max_value": 0.5, "threshold": 0.2},
                                    {"negative_slope": 0.1}])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_layer_on_the_pool_is_the_one_pass_relu(config, dtype, monkeypatch):
    from scratch.layers.core import ReLU

    monkeypatch.setenv("SCRATCH_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "MIN_PARALLEL_COST", 0)
    layer = ReLU(**config, dtype=dtype)
    x = (np.random.default_rng(7).normal(size=(3, 70, 50, 8)) * 4).astype(dtype)
    x[0, 0, 0, :3] = [0.0, 6.0, -0.0]
    out = layer.forward(x)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, layer._relu.forward(x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blas_gemm_is_matmul_and_adds_into_its_output(dtype):
    gemm = parallel.blas_gemm(dtype)
    if gemm is None:
        pytest.skip("no cblas gemm in numpy's BLAS")
    rng = np.random.default_rng(8)
    a = rng.normal(size=(37, 11)).astype(dtype)           # A is a (29, 5) block inside a wider array
    b = rng.normal(size=(5, 7)).astype(dtype)
    c = rng.normal(size=(29, 9)).astype(dtype)
    item = a.itemsize
    first = c.copy()
    gemm(29, 7, 5, a.ctypes.data + (3 * 11 + 2) * item, 11, b.ctypes.data, 7, first.ctypes.data, 9, 0.0)
    np.testing.assert_array_equal(first[:, :7], a[3:32, 2:7] @ b)
    np.testing.assert_array_equal(first[:, 7:], c[:, 7:])   # columns outside C's n are left alone
    again = first.copy()
    gemm(29, 7, 5, a.ctypes.data + (3 * 11 + 2) * item, 11, b.ctypes.data, 7, again.ctypes.data, 9, 1.0)
    np.testing.assert_array_equal(again[:, :7], first[:, :7] + a[3:32, 2:7] @ b)


def test_blas_gemm_knows_only_float32_and_float64():
    assert parallel.blas_gemm("float16") is None
    assert parallel.blas_gemm("int64") is None
