"""The model: a frozen backbone f (``backbone.py``; the known backbones as data in ``specs.py``), the
shared DPT decoder g (``dpt.py``), the depth head and one head per auxiliary dataset (``heads.py``),
assembled by ``depth_aux.build_model``; ``weights.py`` downloads pretrained backbone weights. This
package face imports nothing, so the light parts (specs, weights) load without torch."""
