"""ONNX copies of a SentenceTransformer folder (fp32; int8 by dynamic quantization) and a model that runs them.

The files follow the layout of sentence-transformers' ONNX backend (MODEL/onnx/model*.onnx; inputs input_ids,
attention_mask[, token_type_ids]; output last_hidden_state). Its own exporters need optimum-onnx, which does not
support transformers 5 yet, so the graph comes from torch.onnx (dynamo) and the int8 copy from ONNX Runtime's
quantizer, the same quantizer optimum drives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from ..core.model_ref import local_cache
from ..core.objects import Ref, intact, read_bytes
from ..core.store import RunStore, atomic_write, put_record, read_record

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_qint8.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
SAMPLE_TEXTS = ["An example passage, long enough for a handful of tokens.", "Short one."]


class _TokenEmbeddings(torch.nn.Module):
    """The Hugging Face model with a single output, the token embeddings (what a feature-extraction ONNX file has)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **extra
        ).last_hidden_state


def _transformer(model, model_dir: str):
    """The model's first module, which must be sentence-transformers' Transformer."""
    from sentence_transformers.base.modules.transformer import Transformer

    if not isinstance(model[0], Transformer):
        raise ValueError(
            f"model {model_dir} starts with {type(model[0]).__name__}, not a Transformer: nothing to export to ONNX"
        )
    return model[0]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's notes on optional operators (torchvision's) and on its own deprecations; errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model_dir: str, target: Path | None = None) -> Path:
    """Export the model's transformer to `target`, by default MODEL/onnx/model.onnx (fp32, dynamic batch and sequence
    length)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
    transformer = _transformer(model, model_dir)
    features = transformer.preprocess(SAMPLE_TEXTS)
    inputs = {name: features[name] for name in INPUT_NAMES if name in features}
    dynamic = {name: {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC} for name in inputs}
    target = target or Path(model_dir) / ONNX_DIR / FP32_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            _TokenEmbeddings(transformer.model).eval(),
            (),
            kwargs=inputs,
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=list(inputs),
            output_names=[OUTPUT_NAME],
            external_data=False,
            verbose=False,
        )
    tmp = target.with_name(f".{target.name}.tmp")
    program.save(str(tmp))
    os.replace(tmp, target)
    return target


def quantize_int8(onnx_path: Path) -> Path:
    """Dynamically quantized copy beside it (int8 symmetric weights per channel, uint8 activations), as onnx/model_qint8.onnx."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = onnx_path.with_name(INT8_FILE)
    prepared, tmp = onnx_path.with_name(f".{onnx_path.stem}.prepared.onnx"), target.with_name(f".{target.name}.tmp")
    try:
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"WeightSymmetric": True},
        )
        os.replace(tmp, target)
    finally:
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return target


class OnnxTransformer(torch.nn.Module):
    """Stands in for the Hugging Face model inside sentence-transformers' Transformer module: ONNX Runtime on the CPU.

    Tokenizer, pooling and normalisation stay the SentenceTransformer's own, so only the transformer's arithmetic differs.
    """

    def __init__(self, onnx_path: str, config) -> None:
        import onnxruntime as ort

        super().__init__()
        self.config = config
        self.session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]

    def forward(self, **features) -> dict[str, torch.Tensor]:
        feed = {name: features[name].cpu().numpy() for name in self.input_names}
        (hidden,) = self.session.run([OUTPUT_NAME], feed)
        return {OUTPUT_NAME: torch.from_numpy(hidden)}


def load_onnx_model(model_dir: str, onnx_path: Path):
    """The SentenceTransformer of model_dir with its transformer running the ONNX file on ONNX Runtime (CPU)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
    transformer = _transformer(model, model_dir)
    transformer.model = OnnxTransformer(str(onnx_path), transformer.model.config)
    return model


def stored_onnx(model_dir: str, fingerprint: str, store: RunStore) -> Path:
    """A local copy of the model's fp32 ONNX export, exported once per model hash (fingerprint) into the run store."""
    pointer = store.key_path("onnx-exports", fingerprint, ".json")
    record = read_record(pointer)
    ref = Ref.model_validate(record) if record is not None else None
    if ref is None or not intact(ref):
        with tempfile.TemporaryDirectory() as tmp:
            data = export_onnx(model_dir, Path(tmp) / FP32_FILE).read_bytes()
        ref = store.put_bytes("onnx", data, ".onnx")
        put_record(pointer, ref.model_dump(mode="json"))
    if "://" not in ref.uri:
        return Path(ref.uri)
    local = local_cache() / "onnx" / f"{ref.sha256}.onnx"
    if not local.exists():
        atomic_write(str(local), read_bytes(ref.uri, ref.sha256))
    return local
