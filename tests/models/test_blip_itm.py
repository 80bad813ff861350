"""The BLIP image-text matching twin: the real checkpoint's classes, eager attention, cross-attention maps."""

from __future__ import annotations

from syngen.models.blip_itm import BlipItm
from syngen.models.loading import build_tiny
from tests.helpers import draw_shapes


def test_twin_uses_the_real_checkpoint_classes_and_returns_cross_attentions() -> None:
    itm = BlipItm(build_tiny("itm-blip"))
    # Salesforce/blip-itm-base-coco and -large-coco
    assert type(itm.model).__name__ == "BlipForImageTextRetrieval"
    assert type(itm.processor).__name__ == "BlipProcessor"
    assert type(itm.processor.tokenizer).__name__ == "BertTokenizer"
    inputs = itm.processor(images=[draw_shapes()], text=["a red box"], return_tensors="pt")
    embeds = itm.model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
    out = itm.model.text_encoder(input_ids=inputs["input_ids"], encoder_hidden_states=embeds, output_attentions=True)
    # one map per text layer: (batch, heads, text tokens, 1 + 8x8 patches), rows summing to 1 (eager softmax)
    assert len(out.cross_attentions) == 4
    assert out.cross_attentions[0].shape == (1, 2, inputs["input_ids"].shape[1], 65)
    assert out.cross_attentions[0].sum(-1).allclose(out.cross_attentions[0].new_ones(()))
    assert itm.model(**inputs).itm_score.shape == (1, 2)
