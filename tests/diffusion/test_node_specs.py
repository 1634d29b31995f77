"""The diffusion nodes' interface: ComfyUI names, input/widget order, torch-free import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import vortex_jupyter as vx
from vortex_jupyter.nodes.registry import REGISTRY

#: ComfyUI's inputs in declaration order (widget order in UI workflows) and outputs.
COMFY = {
    "CheckpointLoaderSimple": (["ckpt_name"], ["MODEL", "CLIP", "VAE"]),
    "CLIPTextEncode": (["text", "clip"], ["CONDITIONING"]),
    "EmptyLatentImage": (["width", "height", "batch_size"], ["LATENT"]),
    "KSampler": (["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative",
                  "latent_image", "denoise"], ["LATENT"]),
    "KSamplerAdvanced": (["model", "add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler",
                          "positive", "negative", "latent_image", "start_at_step", "end_at_step",
                          "return_with_leftover_noise"], ["LATENT"]),
    "VAEDecode": (["samples", "vae"], ["IMAGE"]),
    "VAEEncode": (["pixels", "vae"], ["LATENT"]),
    "LatentUpscale": (["samples", "upscale_method", "width", "height", "crop"], ["LATENT"]),
    "LoraLoader": (["model", "clip", "lora_name", "strength_model", "strength_clip"], ["MODEL", "CLIP"]),
}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", sorted(COMFY))
def test_node_has_comfyui_inputs_in_order_outputs_and_is_heavy(name: str) -> None:
    spec = REGISTRY.get(name)
    inputs, outputs = COMFY[name]
    assert [p.name for p in spec.inputs] == inputs
    assert [o.type for o in spec.outputs] == outputs
    assert spec.heavy


def test_seed_widgets_carry_control_after_generate_and_64_bit_range() -> None:
    for name, port in (("KSampler", "seed"), ("KSamplerAdvanced", "noise_seed")):
        seed = REGISTRY.get(name).input(port)
        assert seed is not None and seed.control_after_generate and seed.max == 2**64 - 1


def test_importing_the_diffusion_nodes_does_not_import_torch() -> None:
    code = ("import sys, vortex_jupyter.nodes.diffusion.nodes as n; from vortex_jupyter.nodes.registry "
            "import REGISTRY; REGISTRY.get('KSampler'); "
            "print(len(n.NODE_CLASS_MAPPINGS), [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from vortex_jupyter.nodes.diffusion.nodes import NODE_CLASS_MAPPINGS

    assert out.stdout.split(None, 1) == [str(len(NODE_CLASS_MAPPINGS)), "[]\n"]
    assert len(NODE_CLASS_MAPPINGS) > 40  # every family listed, none of them importing torch


def test_ui_workflow_round_trip_keeps_comfyui_widget_order(tiny_path: Path) -> None:
    ui = vx.load(EXAMPLES / "txt2img.json").to_comfy_ui()
    ks = next(n for n in ui["nodes"] if n["type"] == "KSampler")
    assert ks["widgets_values"][0] == 156680208700286
    assert ks["widgets_values"][2:] == [4, 8.0, "euler", "normal", 1.0]  # [1] is control_after_generate
    back = vx.load(json.loads(json.dumps(ui)))
    assert back.nodes["3"].params["scheduler"] == "normal" and back.nodes["3"].params["steps"] == 4


def test_every_comfyui_sampler_and_scheduler_name_validates_as_a_choice() -> None:
    spec = REGISTRY.get("KSampler")
    names = spec.input("sampler_name").choices
    assert names is not None and {"euler", "dpmpp_2m", "dpmpp_sde", "uni_pc_bh2", "lcm"} <= set(names)
    scheds = spec.input("scheduler").choices
    assert scheds is not None and {"normal", "karras", "sgm_uniform", "beta"} <= set(scheds)
    assert spec.check is not None and spec.check({"sampler_name": "dpmpp_2m", "scheduler": "karras"}) == []


def test_missing_checkpoint_and_lora_files_are_validation_problems_before_anything_runs(models_dir: Path) -> None:
    (models_dir / "checkpoints").mkdir(exist_ok=True)
    (models_dir / "checkpoints" / "present.safetensors").write_bytes(b"not loaded by validation")
    g = vx.Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name="missing.safetensors")
    lora = g.add("LoraLoader", model=ckpt.out(0), clip=ckpt.out(1), lora_name="nope.safetensors")
    problems = {(p.node, p.port): p for p in g.problems()}
    assert set(problems) == {(ckpt.id, "ckpt_name"), (lora.id, "lora_name")}
    assert all(p.code == "VE-117" for p in problems.values())  # a missing file, as a missing input image
    assert all("VORTEX_MODELS_DIR" in p.hint for p in problems.values())
    text = problems[ckpt.id, "ckpt_name"].message
    assert "'missing.safetensors' not found" in text and "'present.safetensors'" in text and "vortex-tiny" in text
    assert str(models_dir / "loras") in problems[lora.id, "lora_name"].message
    for fine in ("vortex-tiny", "present.safetensors", "some-org/some-model"):  # hub ids resolve at run time
        ckpt.params["ckpt_name"] = fine
        assert [p.port for p in g.problems()] == ["lora_name"], fine
    ckpt.params["ckpt_name"] = "../escape.safetensors"
    assert any("not a safe name" in p.message for p in g.problems())
