"""Diffusion nodes on diffusers: the ONLY node package (with ``workers/``) that imports torch.

- ``nodes``: ComfyUI-compatible node classes (importable without torch; the registry lists them).
- ``models``: the built-in tiny model (``vx.models.tiny()``) and the SD1.5-shaped configs.
- ``loaders`` / ``single_file`` / ``ldm``: ``ckpt_name`` -> MODEL, CLIP, VAE through the memory arbiter.
- ``samplers`` / ``sampling`` / ``previews``: ComfyUI sampler names -> diffusers schedulers, our loop.
- ``text`` / ``vae`` / ``latent`` / ``lora``: text encoding, VAE, latent resize, LoRA merging.
- ``components``: Component (a module loaded through the memory arbiter) and the MODEL/CLIP/VAE handles.

Nothing is imported here, so ``import vortex_jupyter.nodes.diffusion.nodes`` stays light.
"""
