"""Export a model to ONNX for the ONNX Runtime engine (valle infer --engine onnxruntime --onnx DIR).

Writes DIR/ar.onnx (the AR decoder with its KV cache: the prefill and every step), DIR/nar.onnx (codebooks 1-7)
and DIR/manifest.json (a digest of the model the files came from, its config, the files' format, the opset and the
precision). --adapter merges adapters first, as valle infer does; infer then needs the same --checkpoint and --adapter.
int8: every matrix product's weights in signed 7-bit integers per output channel, activations quantized per call
(ONNX Runtime's dynamic quantization; why: valle/onnx_engine/export.py quantize_int8), embeddings in 8 bits per row.
"""

from __future__ import annotations

from valle.cli import ArgumentParser


def main(argv: list[str] | None = None) -> None:
    from valle.onnx_engine.export import OPSET, PRECISIONS

    p = ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default="vallex",
                   help="checkpoint file, or 'vallex' for the released one (cached, downloaded once) [vallex]")
    p.add_argument("--adapter", nargs="+", default=None, metavar="FILE",
                   help="adapter files of --checkpoint (at most one per half), merged into the weights first")
    p.add_argument("--nhead", type=int, default=None,
                   help="attention heads; the released file does not store it [checkpoint's config, else 16]")
    p.add_argument("--output", required=True, metavar="DIR", help="the folder for the .onnx files and the manifest")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32, or int8 weights (about a quarter of the size; see docs/synthesis.md) [fp32]")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset [{OPSET}]")
    a = p.parse_args(argv)

    from valle.inference import load_for_inference
    from valle.onnx_engine.export import export
    from valle.onnx_engine.runtime import require

    require("onnx", "the ONNX export")  # torch.onnx.export writes with it
    if a.precision == "int8":
        require("onnxruntime", "--precision int8")  # its quantizer
    speaking = load_for_inference(a.checkpoint, a.adapter or (), device="cpu", nhead=a.nhead)
    manifest = export(speaking.model, a.output, precision=a.precision, opset=a.opset)
    print(manifest)
