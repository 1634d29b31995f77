"""Built-in, torch-free node families, registered lazily by ``nodes.registry.REGISTRY``.

- ``primitives``: PrimitiveInt/Float/String/StringMultiline/Boolean (ComfyUI's names);
- ``math``: IntAdd ... FloatDivide, IntToFloat, FloatToInt (no expression evaluation);
- ``strings``: StringConcatenate, StringReplace, StringLength, StringFormat (safe placeholders);
- ``image``: LoadImage, SaveImage, PreviewImage, ImageScale, ImageInvert as ComfyUI classes;
- ``image_ops``: ImageScaleBy, ImageScaleToTotalPixels, ImageScaleToMaxDimension, ImageBatch,
  ImageFromBatch, ImageCrop, ImagePadForOutpaint, GetImageSize;
- ``filters``: ImageBlur, ImageSharpen, ImageBlend;
- ``masks``: LoadImageMask, ImageToMask, MaskToImage, InvertMask, SolidMask, GrowMask,
  FeatherMask, MaskComposite, CropMask, ThresholdMask, ImageCompositeMasked;
- ``animated``: SaveAnimatedWEBP, SaveAnimatedPNG;
- ``utility``: PreviewAny, ComfySwitchNode;
- ``values``: ComfyMathExpression (``mathexpr``, ``mathexpr_eval``: a safe parser, no eval),
  ResolutionSelector, CustomCombo;
- ``text_nodes``: RegexReplace, RegexExtract, JsonExtractString, SaveText;
- ``previews``: ImageCompare, MaskPreview; ``save_advanced``: SaveImageAdvanced (PNG 8/16-bit);
- ``resize``: ResizeImageMaskNode, ResizeAndPadImage; ``canny``: Canny (kornia's algorithm in numpy);
- ``combine``: BatchImagesNode, ImageStitch, JoinImageWithAlpha, EmptyImage.
  ComfyUI's dynamic inputs (Autogrow, DynamicCombo) are flat inputs named ``group.name`` (``dynamic``).

The image families compute in numpy (+ Pillow where ComfyUI uses it); ``resample`` is their
``comfy.utils.common_upscale``. Function nodes are declared with ``@node(register=False)`` and
listed in ``FUNCTION_NODES``; class nodes in ``NODE_CLASS_MAPPINGS``. Importing this package
registers nothing by itself, so the registry decides precedence (a user's earlier registration
of the same name wins).
"""

from __future__ import annotations

from . import (
    animated,
    canny,
    combine,
    filters,
    frontend,
    image,
    image_ops,
    masks,
    math,
    previews,
    primitives,
    resize,
    save_advanced,
    strings,
    text_nodes,
    utility,
    values,
)

FUNCTION_NODES = [*primitives.NODES, *math.NODES, *strings.NODES, *frontend.NODES]  # frontend: PrimitiveNode
_CLASS_MODULES = (strings, image, image_ops, filters, masks, animated, utility,
                  values, text_nodes, previews, save_advanced, resize, canny, combine)
NODE_CLASS_MAPPINGS = {name: cls for m in _CLASS_MODULES for name, cls in m.NODE_CLASS_MAPPINGS.items()}
NODE_DISPLAY_NAME_MAPPINGS = {k: v for m in _CLASS_MODULES for k, v in m.NODE_DISPLAY_NAME_MAPPINGS.items()}

__all__ = ["FUNCTION_NODES", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
