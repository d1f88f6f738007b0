import gzip
import hashlib
import pickle

import numpy as np
import pytest

from model.data import INTENSITY_SCALE
from model.mnist import DataError, load_idx_mnist, parse_mnist_pickle, read_idx, restricted_loads
from tests.conftest import write_idx


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_any_other_global():
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global (posix|os|nt)\.system"):
        restricted_loads(pickle.dumps(_Exploit(), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.eval"):
        restricted_loads(b"cbuiltins\neval\n(S'1'\ntR.")


def test_restricted_unpickler_admits_numpy_arrays():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    loaded = restricted_loads(pickle.dumps(array, protocol=3))  # 3: bytes without _codecs
    assert isinstance(loaded, np.ndarray)
    np.testing.assert_array_equal(loaded, array)


def test_parse_mnist_pickle_restores_uint8_from_float_scale():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(3, 784)).astype(np.uint8)
    floats = raw.astype(np.float32) / INTENSITY_SCALE
    labels = np.array([1, 2, 3], dtype=np.int64)
    payload = gzip.compress(pickle.dumps(((floats, labels), (floats, labels), (floats, labels)), protocol=3))
    train, _validation, test = parse_mnist_pickle(payload)
    np.testing.assert_array_equal(train.images, raw.reshape(3, 28, 28))
    np.testing.assert_array_equal(test.labels, labels)
    assert train.images.dtype == np.uint8
    assert hashlib.sha256(payload).hexdigest()  # the fetcher compares this with the pinned hash


def test_idx_round_trip_and_validation_split(tiny_idx_dir):
    data = load_idx_mnist(tiny_idx_dir)
    assert data.train.images.shape[1:] == (28, 28)
    assert len(data.train) + len(data.validation) == 240  # 1/6 held back from a small copy
    assert len(data.validation) == 40
    assert len(data.test) == 40


def test_idx_reader_rejects_truncated_files(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(tmp_path / "ok.gz", np.zeros((2, 28, 28)))
    raw = gzip.decompress((tmp_path / "ok.gz").read_bytes())
    path.write_bytes(raw[:-10])
    with pytest.raises(DataError, match="header says 1568"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x0d\x03")
    with pytest.raises(DataError, match="not an unsigned-byte IDX"):
        read_idx(path)
