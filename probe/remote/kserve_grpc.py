"""The KServe v2 (Open Inference Protocol) gRPC messages that probe uses, built at run time.

The published ``grpc_predict_v2.proto`` (package ``inference``, service
``GRPCInferenceService``; Triton's ``grpc_service.proto`` and MLServer's
``dataplane.proto`` carry the same messages under the same numbers) is described here
field by field as a ``FileDescriptorProto`` and turned into message classes by the
installed protobuf runtime, in a private descriptor pool: no generated code (which is
tied to one protobuf version), no protoc, and no clash with another copy of the same
protocol loaded in the process (tritonclient, MLServer). Only the messages probe sends
or reads are declared; fields it does not declare are skipped when parsed.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

SERVICE = "/inference.GRPCInferenceService/"

# message -> fields: (number, name, type, label, message type); label "r" repeated, "m" a map to InferParameter
_S, _B, _I64, _I32, _U32, _U64, _F, _D, _BY, _M = (
    "string", "bool", "int64", "int32", "uint32", "uint64", "float", "double", "bytes", "message",
)  # fmt: skip
MESSAGES: dict[str, list[tuple]] = {
    "ServerReadyRequest": [],
    "ServerReadyResponse": [(1, "ready", _B, "", None)],
    "ModelMetadataRequest": [(1, "name", _S, "", None), (2, "version", _S, "", None)],
    "InferParameter": [(1, "bool_param", _B, "o", None), (2, "int64_param", _I64, "o", None),
                       (3, "string_param", _S, "o", None), (4, "double_param", _D, "o", None),
                       (5, "uint64_param", _U64, "o", None)],
    "InferTensorContents": [(1, "bool_contents", _B, "r", None), (2, "int_contents", _I32, "r", None),
                            (3, "int64_contents", _I64, "r", None), (4, "uint_contents", _U32, "r", None),
                            (5, "uint64_contents", _U64, "r", None), (6, "fp32_contents", _F, "r", None),
                            (7, "fp64_contents", _D, "r", None), (8, "bytes_contents", _BY, "r", None)],
    "TensorMetadata": [(1, "name", _S, "", None), (2, "datatype", _S, "", None), (3, "shape", _I64, "r", None)],
    "ModelMetadataResponse": [(1, "name", _S, "", None), (2, "versions", _S, "r", None), (3, "platform", _S, "", None),
                              (4, "inputs", _M, "r", "TensorMetadata"), (5, "outputs", _M, "r", "TensorMetadata"),
                              (6, "parameters", _M, "m", None)],
    "InferInputTensor": [(1, "name", _S, "", None), (2, "datatype", _S, "", None), (3, "shape", _I64, "r", None),
                         (4, "parameters", _M, "m", None), (5, "contents", _M, "", "InferTensorContents")],
    "InferOutputTensor": [(1, "name", _S, "", None), (2, "datatype", _S, "", None), (3, "shape", _I64, "r", None),
                          (4, "parameters", _M, "m", None), (5, "contents", _M, "", "InferTensorContents")],
    "ModelInferRequest": [(1, "model_name", _S, "", None), (2, "model_version", _S, "", None), (3, "id", _S, "", None),
                          (4, "parameters", _M, "m", None), (5, "inputs", _M, "r", "InferInputTensor"),
                          (7, "raw_input_contents", _BY, "r", None)],
    "ModelInferResponse": [(1, "model_name", _S, "", None), (2, "model_version", _S, "", None), (3, "id", _S, "", None),
                           (4, "parameters", _M, "m", None), (5, "outputs", _M, "r", "InferOutputTensor"),
                           (6, "raw_output_contents", _BY, "r", None)],
}  # fmt: skip
# Where the published proto nests a message (the wire format does not care; names are for reading)
_NESTED = {"TensorMetadata", "InferInputTensor", "InferOutputTensor"}


@lru_cache(maxsize=1)
def messages() -> SimpleNamespace:
    """The message classes (``messages().ModelInferRequest`` ...), built once."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="probe_kserve_v2.proto", package="inference", syntax="proto3")
    field = descriptor_pb2.FieldDescriptorProto
    for name, fields in MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        if any(label == "o" for *_, label, _ in fields):
            msg.oneof_decl.add(name="parameter_choice")
        for number, fname, kind, label, type_name in fields:
            f = msg.field.add(name=fname, number=number, json_name=_camel(fname))
            f.label = field.LABEL_REPEATED if label in ("r", "m") else field.LABEL_OPTIONAL
            f.type = getattr(field, f"TYPE_{kind.upper()}")
            if label == "o":
                f.oneof_index = 0
            if label == "m":  # map<string, InferParameter>: a nested entry type
                entry = msg.nested_type.add(name="ParametersEntry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                                type_name=".inference.InferParameter")  # fmt: skip
                f.type_name = f".inference.{name}.ParametersEntry"
            elif type_name:
                f.type_name = f".inference.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return SimpleNamespace(
        **{name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}")) for name in MESSAGES}
    )


def parameter_value(p) -> object:
    """The Python value of an InferParameter."""
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)
