"""Small real image builders for tests of the Images page: ``build_jupyter_image``'s
signature and progress calls, without podman, so a build takes a fraction of a second.

They are handed to the app through its documented seam (``IMAGE_BUILDER`` config, or
``HOURGLASS_IMAGE_BUILDER=tests.image_builders:quick_build`` for a live server).
"""

import time

from scheduler.jupyter_image import STEPS, JupyterImageError


def quick_build(image, env=None, progress=None, force=False, pause=0.5):
    """Report each of the four steps and a log line in each, ``pause`` seconds apart."""
    for index, name in enumerate(STEPS, 1):
        progress(index, len(STEPS), f"{name}: working on {image}{' (forced)' if force else ''}")
        time.sleep(pause)
        progress(index, len(STEPS), f"{name}: done")
    progress(len(STEPS), len(STEPS), f"image: built {image}")
    return image


def failing_build(image, env=None, progress=None, force=False):
    """Get through the first step, then fail in the second as a real step does."""
    progress(1, len(STEPS), "base image: skipped")
    progress(2, len(STEPS), "python version: running python3")
    raise JupyterImageError("cannot run python3 in localhost/base (exit status 127):\n"
                            "python3: not found")
