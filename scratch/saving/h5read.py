"""HDF5 access for hostile files: every h5py call the loader makes, with its errors named.

h5py raises KeyError, OSError, RuntimeError, ValueError or TypeError from plain membership tests
and lookups when a file is corrupt (a broken symbol table, a soft link to itself, an external
link to a missing file, a group where a dataset belongs). Here each becomes a ``ModelFileError``
naming the file and the object. Keras writes only hard links and plain contiguous or chunked
datasets, so soft and external links, external storage and virtual datasets are refused before
they are followed (an external link or external storage could read any file on the machine).

Weights: a dataset must be floating point (float16, float32 or float64; it is cast to the layer's
dtype, as Keras's ``assign`` casts), or an integer where the layer keeps an integer weight
(Normalization's int64 ``count``), and have exactly the shape the config implies; both are
checked from the dataset's header before a byte of it is read. Keras itself would silently cast
integer, bool or complex datasets (dropping imaginary parts); no Keras model writes them, so here
they are refused as a sign of a damaged or doctored file. Compound, opaque, string and
variable-length datasets Keras cannot read either.
"""

import h5py
import numpy as np

from ..errors import ModelFileError, WeightMismatchError

H5_ERRORS = (KeyError, OSError, RuntimeError, ValueError, TypeError, AttributeError)
FLOAT_ITEMSIZES = (2, 4, 8)


def open_h5(source, label):
    try:
        return h5py.File(source, "r")
    except H5_ERRORS as exc:   # truncated or corrupt: h5py cannot find its superblock or root group
        raise ModelFileError(f"{label}: cannot read the HDF5 file (truncated or corrupt?): {exc}") from None


def member(group, name, label, kind=None):
    """``group[name]`` or None when absent; refuses links Keras never writes and the wrong kind."""
    where = f"{label}: '{group.name.rstrip('/')}/{name}'"
    try:
        link = group.get(name, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise ModelFileError(f"{where} is an external link to {link.filename!r}; Keras files hold none")
        if isinstance(link, h5py.SoftLink):
            raise ModelFileError(f"{where} is a soft link to {link.path!r}; Keras files hold none")
        obj = group[name]
    except ModelFileError:
        raise
    except H5_ERRORS as exc:
        raise ModelFileError(f"{where}: cannot read it (corrupt file?): {type(exc).__name__}: {exc}") from None
    if kind is not None and not isinstance(obj, kind):
        want = "a dataset" if kind is h5py.Dataset else "a group"
        raise ModelFileError(f"{where} should be {want}, found {type(obj).__name__}")
    return obj


def keys(group, label):
    try:
        return list(group.keys())
    except H5_ERRORS as exc:
        raise ModelFileError(f"{label}: cannot list '{group.name}' (corrupt file?): {exc}") from None


def attr(obj, name, label):
    """An attribute's value, or None when absent."""
    try:
        if name not in obj.attrs:
            return None
        return obj.attrs[name]
    except H5_ERRORS as exc:
        raise ModelFileError(f"{label}: cannot read attribute '{name}' of '{obj.name}' (corrupt file?): "
                             f"{type(exc).__name__}: {exc}") from None


def attr_str(value, label, what):
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == () :
        value = value[()]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{label}: {what} is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise ModelFileError(f"{label}: {what} should be text, found {type(value).__name__}")


def attr_list(group, name, label):
    """A string-list attribute, joining Keras's split ``name0``, ``name1``, ... chunks."""
    values = attr(group, name, label)
    if values is None:
        chunks, i = [], 0
        while True:
            chunk = attr(group, f"{name}{i}", label)
            if chunk is None:
                break
            chunks.extend(np.asarray(chunk).reshape(-1))
            i += 1
        values = chunks
    arr = np.asarray(values, dtype=object).reshape(-1)
    return [attr_str(v, label, f"an entry of attribute '{name}' of '{group.name}'") for v in arr
            if not isinstance(v, float)]   # an empty list attribute reads back as [nan]


def check_weight(dataset, path, label, expected, layer_label, integer=False):
    """Refuse a weight dataset of the wrong kind, dtype or shape from its header alone. ``integer``:
    the layer keeps this weight as an integer (Normalization's ``count``), so integers are expected."""
    try:
        dtype, shape = dataset.dtype, tuple(dataset.shape or ())
        external = dataset.external
        virtual = dataset.is_virtual
    except H5_ERRORS as exc:
        raise ModelFileError(f"{label}: dataset '{path}': cannot read its header (corrupt file?): {exc}") from None
    if external or virtual:
        raise ModelFileError(f"{label}: dataset '{path}' keeps its data {'in external files' if external else 'virtually'} "
                             "elsewhere; Keras files hold none")
    if integer:
        if dtype.kind not in "iu" or dtype.itemsize > 8 or dtype.fields or dtype.subdtype:
            raise WeightMismatchError(f"{label}: {layer_label}: dataset '{path}' has dtype {dtype}; this weight "
                                      "is an integer counter")
    elif dtype.kind != "f" or dtype.itemsize not in FLOAT_ITEMSIZES or dtype.fields or dtype.subdtype:
        raise WeightMismatchError(f"{label}: {layer_label}: dataset '{path}' has dtype {dtype}; weights must be "
                                  "float16, float32 or float64")
    if expected is not None and shape != tuple(expected):
        raise WeightMismatchError(f"{label}: {layer_label}: expected shape {tuple(expected)}, found {shape} in "
                                  f"dataset '{path}'")


def read(dataset, path, label):
    try:
        return np.asarray(dataset[()])
    except H5_ERRORS as exc:
        raise ModelFileError(f"{label}: cannot read dataset '{path}' (truncated or corrupt file?): {exc}") from None
