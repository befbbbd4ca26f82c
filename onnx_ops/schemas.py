"""Schemas of the ``ai.schrodinger_fp`` operators, registered with onnx.defs (SPEC.md X1-X4).

Registering makes ``onnx.checker.check_model(model, full_check=True)`` and shape inference
understand the operators. ``register()`` is idempotent, so importing this module twice (or
calling it again) is harmless.
"""

import logging

import numpy as np
import onnx
from onnx import TensorProto
from onnx.defs import OpSchema

logger = logging.getLogger(__name__)

DOMAIN = "ai.schrodinger_fp"
VERSION = 1

ANCHOR_MODES = ("bias", "input", "max")
BASE_ELEMENT_TYPES = {"fp32": TensorProto.FLOAT, "bf16": TensorProto.BFLOAT16}

# Attribute defaults of Narrow; bias None means the IEEE bias 2^(e-1) - 1 of the runtime e.
DEFAULTS = {
    "bias": None,
    "specials": "ieee",
    "subnormals": 1,
    "saturate": 0,
    "rounding": "nearest_even",
    "anchor_mode": "bias",
    "base": "fp32",
}

NARROW_DOC = """\
Narrow a float32 or bfloat16 tensor to a floating-point container, in one rounding step.

The container has 1 sign, `exponent_bits` and `mantissa_bits` bits. Both widths are 0-d int64
inputs, so changing a width needs no new model or session. The attributes fix the rest of the
container, with the meaning of `reference.Container` (SPEC.md section C):

- `bias` (int, default 2^(e-1) - 1 of the runtime e): exponent bias when `anchor_mode` is "bias".
- `specials` ("ieee", "fn", "none"): "ieee" keeps inf and NaN in the all-ones exponent, "fn" only
  the all-ones code as NaN, "none" has no specials.
- `subnormals` (0 or 1), `saturate` (0 or 1: overflow and inf go to the signed max).
- `rounding` ("nearest_even", "toward_zero", "stochastic"); stochastic rounding needs `noise`.
- `anchor_mode`: "bias" places the exponent window with `bias`. "input" makes the 0-d int64
  input `anchor` the largest normal exponent. "max" takes the anchor from the tensor itself, as
  the exponent of its largest finite magnitude after mantissa rounding, clamped to 127.
- `base` ("fp32", "bf16"): the element type of X and Y, float or bfloat16.

Stochastic rounding drops d bits with value D and rounds up iff noise < D * 2^(32 - d), where
`noise` is a uint32 tensor of X's shape. Y has X's type and shape; -0 stays -0 and a NaN becomes
the quiet NaN with its sign.
"""


def complete_attributes(attributes):
    """Return ``attributes`` (a dict of Narrow attributes) with every default filled in."""
    unknown = set(attributes) - set(DEFAULTS)
    if unknown:
        raise ValueError(
            f"Narrow attributes must be among {', '.join(DEFAULTS)}; got "
            f"{', '.join(sorted(unknown))}"
        )
    complete = dict(DEFAULTS)
    complete.update({k: v for k, v in attributes.items() if v is not None})
    check_attributes(complete)
    return complete


def check_attributes(attributes):
    """Raise ValueError naming the first Narrow attribute that has an invalid value."""
    choices = {
        "specials": ("ieee", "fn", "none"),
        "rounding": ("nearest_even", "toward_zero", "stochastic"),
        "anchor_mode": ANCHOR_MODES,
        "base": tuple(BASE_ELEMENT_TYPES),
        "subnormals": (0, 1),
        "saturate": (0, 1),
    }
    for name, allowed in choices.items():
        if attributes[name] not in allowed:
            raise ValueError(
                f"Narrow attribute {name} must be one of {', '.join(map(repr, allowed))}; "
                f"got {attributes[name]!r}"
            )
    if attributes["bias"] is not None and attributes["anchor_mode"] != "bias":
        raise ValueError(
            f"Narrow attribute bias is only used with anchor_mode 'bias'; got bias "
            f"{attributes['bias']} with anchor_mode {attributes['anchor_mode']!r} (drop bias)"
        )


def container_of(attributes, exponent_bits, mantissa_bits):
    """Return the ``reference.Container`` that Narrow's attributes and widths describe."""
    from reference import Container

    a = complete_attributes(attributes)
    return Container(
        as_int(exponent_bits, "exponent_bits"), as_int(mantissa_bits, "mantissa_bits"),
        bias=a["bias"] if a["anchor_mode"] == "bias" else None, specials=a["specials"],
        subnormals=bool(a["subnormals"]), saturate=bool(a["saturate"]),
        rounding=a["rounding"], base=a["base"],
    )


def attributes_of(container, anchor_mode="bias"):
    """Return the Narrow attributes of ``container`` (a ``reference.Container``)."""
    default_bias = 2 ** (container.exponent_bits - 1) - 1
    return {
        "bias": (container.bias if anchor_mode == "bias" and container.bias != default_bias
                 else None),
        "specials": container.specials,
        "subnormals": int(container.subnormals),
        "saturate": int(container.saturate),
        "rounding": container.rounding,
        "anchor_mode": anchor_mode,
        "base": container.base,
    }


def as_int(value, name):
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iu":
        raise ValueError(f"Narrow input {name} must be a 0-d integer tensor; got {value!r}")
    return int(array)


# shape and type inference


def node_attributes(ctx, names=tuple(DEFAULTS)):
    values = {}
    for name in names:
        attribute = ctx.get_attribute(name)
        if attribute is not None:
            values[name] = onnx.helper.get_attribute_value(attribute)
            if isinstance(values[name], bytes):
                values[name] = values[name].decode()
    return values


def _infer_narrow(ctx):
    """Check Narrow's inputs and attributes, then give Y the type and shape of X."""
    attributes = complete_attributes(node_attributes(ctx))
    x_type = ctx.get_input_type(0)
    expected = BASE_ELEMENT_TYPES[attributes["base"]]
    if x_type is not None and x_type.tensor_type.elem_type not in (0, expected):
        got = TensorProto.DataType.Name(x_type.tensor_type.elem_type)
        raise ValueError(
            f"Narrow input X must be {TensorProto.DataType.Name(expected)} with base "
            f"{attributes['base']!r}; got {got}"
        )
    _check_optional_inputs(ctx, attributes)
    check_constant_widths(ctx, attributes)
    if x_type is not None:
        ctx.set_output_type(0, x_type)


def _check_optional_inputs(ctx, attributes):
    has_anchor = ctx.get_num_inputs() > 3 and ctx.has_input(3)
    has_noise = ctx.get_num_inputs() > 4 and ctx.has_input(4)
    if (attributes["anchor_mode"] == "input") != has_anchor:
        raise ValueError(
            f"Narrow input anchor must be given exactly when anchor_mode is 'input'; got "
            f"anchor_mode {attributes['anchor_mode']!r} with anchor "
            f"{'given' if has_anchor else 'missing'}"
        )
    if (attributes["rounding"] == "stochastic") != has_noise:
        raise ValueError(
            f"Narrow input noise must be given exactly when rounding is 'stochastic'; got "
            f"rounding {attributes['rounding']!r} with noise {'given' if has_noise else 'missing'}"
        )


def check_constant_widths(ctx, attributes):
    """Build the container when both widths are constants, so bad widths fail at check time."""
    widths = [ctx.get_input_data(i) for i in (1, 2)]
    if any(w is None for w in widths):
        return
    values = [onnx.numpy_helper.to_array(w) for w in widths]
    container = container_of(attributes, *values)
    if attributes["anchor_mode"] == "bias":
        container.with_anchor(None)  # checks that the bias puts the window in range


def default_attribute(name, value, description):
    return OpSchema.Attribute(name, onnx.helper.make_attribute(name, value), description)


def optional_attribute(name, attr_type, description):
    return OpSchema.Attribute(name, attr_type, description, required=False)


def container_attributes(anchor_modes):
    """Return the attributes that describe a container, with ``anchor_modes`` as the allowed modes."""
    return [
        optional_attribute("bias", OpSchema.AttrType.INT, "exponent bias; default 2^(e-1) - 1"),
        default_attribute("specials", "ieee", "'ieee', 'fn' or 'none'"),
        default_attribute("subnormals", 1, "1 keeps subnormals, 0 flushes them"),
        default_attribute("saturate", 0, "1 maps overflow and inf to the signed largest "
                          "member that the base format holds (SPEC.md C13)"),
        default_attribute("rounding", "nearest_even",
                          "'nearest_even', 'toward_zero' or 'stochastic'"),
        default_attribute("anchor_mode", "bias", anchor_modes),
        default_attribute("base", "fp32", "'fp32' or 'bf16', the element type of X"),
    ]


def _narrow_schema():
    schema = OpSchema(
        "Narrow", DOMAIN, VERSION, NARROW_DOC,
        inputs=[
            OpSchema.FormalParameter("X", "T", "tensor to narrow"),
            OpSchema.FormalParameter("exponent_bits", "tensor(int64)", "0-d, 1..8"),
            OpSchema.FormalParameter(
                "mantissa_bits", "tensor(int64)", "0-d, 0..23 (fp32) or 0..7 (bf16)"
            ),
            OpSchema.FormalParameter(
                "anchor", "tensor(int64)", "0-d largest normal exponent (anchor_mode 'input')",
                param_option=OpSchema.FormalParameterOption.Optional,
            ),
            OpSchema.FormalParameter(
                "noise", "tensor(uint32)", "shape of X (rounding 'stochastic')",
                param_option=OpSchema.FormalParameterOption.Optional,
            ),
        ],
        outputs=[OpSchema.FormalParameter("Y", "T", "narrowed tensor, type and shape of X")],
        type_constraints=[("T", ["tensor(float)", "tensor(bfloat16)"], "float32 or bfloat16")],
        attributes=container_attributes("'bias', 'input' or 'max'"),
    )
    schema.set_type_and_shape_inference_function(_infer_narrow)
    return schema


# The operators of the domain; ``register`` builds their schemas.
OPERATORS = ("Narrow", "NarrowEncode", "NarrowDecode", "GeckoEncode", "GeckoDecode")


def _schema_builders():
    # Imported here because code_schemas builds on this module's helpers.
    from onnx_ops import code_schemas

    return {"Narrow": _narrow_schema, **code_schemas.SCHEMA_BUILDERS}


def register():
    """Register every operator schema of the domain with onnx.defs; repeated calls do nothing."""
    for name, build in _schema_builders().items():
        if onnx.defs.has(name, DOMAIN):
            continue
        onnx.defs.register_schema(build())
        logger.debug("registered schema %s::%s version %d", DOMAIN, name, VERSION)


register()
