"""The errors erpack raises for bad input: each message names the file, the record and what to do."""


class ErpackError(Exception):
    """Base of every error meant for a user (the CLI prints it without a traceback, exit 2)."""


class AssetError(ErpackError):
    """A model or data set could not be found or read (names the command that installs it)."""


class UnsupportedModelError(ErpackError):
    """An architecture the split cannot cut: no single list of layers, or refused in erpack.models.layers (says why)."""


class CodecError(ErpackError):
    """An unknown codec, a bad spec string, or an encoded buffer that does not decode."""


class KernelCheckError(ErpackError):
    """A codec whose library kernels failed their known-answer check on this machine (names the
    codec, the library and its version, the CPU, and what to use instead). Not a CodecError on
    purpose: the data is not damaged, so readers must not report it as a damaged record."""


class StoreError(ErpackError):
    """A cache folder that cannot be read or written as asked."""


class CorruptRecordError(StoreError):
    """A record whose checksum or framing is wrong (names shard, record and offset)."""


class CorruptManifestError(StoreError):
    """A manifest.json that is damaged: not JSON, malformed, or failing its checksum (names the file)."""


class ManifestMismatchError(StoreError):
    """A cache made by another model, layer, tokenizer or codec than the one asked for."""


class InputError(ErpackError):
    """A malformed corpus or label file (names the file and the line)."""


class PruneError(ErpackError):
    """A pruning target, plan or pruned model that cannot be used as asked (says what to change)."""


class ExportError(ErpackError):
    """An ONNX export that failed its parity check or cannot be written (names the file and the
    largest difference; the file is not left in place)."""


class GraphCacheMismatchError(ManifestMismatchError):
    """An ONNX graph exported for another cache (model weights, layer or codec) than the one given."""


class OutputExistsError(ErpackError):
    """An output (task model folder, ONNX file) that exists already, written without --overwrite."""


class TaskModelError(InputError):
    """A task model folder that is damaged, mixed, altered or not one erpack wrote (names the file)."""


class BundleError(ErpackError):
    """A deployment bundle that is missing, incomplete, damaged or not one this erpack reads."""
