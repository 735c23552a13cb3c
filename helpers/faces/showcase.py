""" "What fruit is this" in a notebook: one photo answered, and cluttered test pictures with
their answers, both through :class:`helpers.core.predict.PhotoRecognizer` (the code
path of ``python -m helpers predict``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from helpers import storage
from helpers.core import augment, images
from helpers.core.predict import PhotoRecognizer, Prediction
from helpers.faces import show


def answer_photo(recognizer: PhotoRecognizer, photo: str | bytes, name: str = "photo"):
    """Answer one photo (a path, a URI or its bytes): ``(prediction, figure)``; the figure
    shows the photo and its top labels (none when the photo cannot be read)."""
    if isinstance(photo, (bytes, bytearray)):
        prediction = recognizer.predict_bytes([(name, bytes(photo))])[0]
        data: bytes | None = None if prediction.error else bytes(photo)
    else:
        prediction = recognizer.predict([photo])[0]
        data = None if prediction.error else storage.read_bytes(photo)
    if data is None:
        return prediction, None
    rgb = images.decode_rgb(data, recognizer.backbone.input_size)
    return prediction, answers_figure([rgb], [prediction], columns=1)


def cluttered_examples(
    examples: list[dict], recognizer: PhotoRecognizer
) -> tuple[list[np.ndarray], list[Prediction]]:
    """The cluttered test pictures of ``examples`` (``{"path", "label"}``, as listed in
    ``recognition_report.json``), remade exactly as the evaluation made them (copy 0) and
    answered by ``recognizer``."""
    settings = recognizer.metadata["settings"]["augmentation"]
    spec = augment.evaluation_spec(
        settings["seed"], augment.list_backgrounds(settings.get("held_out_backgrounds"))
    )
    size = recognizer.backbone.input_size
    pictures = [spec.render(storage.read_bytes(e["path"]), e["path"], 0, size) for e in examples]
    named = [(e["label"], _png(p)) for e, p in zip(examples, pictures)]
    return pictures, recognizer.predict_bytes(named)


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def answers_figure(
    pictures: list[np.ndarray],
    predictions: list[Prediction],
    truths: list[str] | None = None,
    columns: int = 4,
):
    """Pictures with their top labels and probabilities under each (green: right,
    red: wrong, grey: not sure or no truth given)."""
    import matplotlib.pyplot as plt

    columns = max(1, min(columns, len(pictures)))
    rows = -(-len(pictures) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (picture, answer) in enumerate(zip(pictures, predictions)):
        ax = axes.ravel()[i]
        ax.imshow(picture)
        lines = [f"{label} {p:.0%}" for label, p in answer.top[:3]] or [answer.error or "?"]
        if answer.sure is False:
            lines[0] = "not sure: " + lines[0]
        colour = "dimgrey"
        if truths is not None and answer.label is not None and answer.sure is not False:
            colour = "tab:green" if answer.label == truths[i] else "tab:red"
        title = (f"true: {truths[i]}\n" if truths is not None else "") + "\n".join(lines)
        ax.set_title(title, fontsize=8, color=colour, loc="left")
    fig.tight_layout()
    return fig


def upload_box(recognizer: PhotoRecognizer):
    """An ipywidgets upload button and, under it, each uploaded photo with its answer
    (interactive Jupyter only: papermill cannot click). Where widgets cannot appear (EMR's
    PySpark kernel, whose cells run in a Livy session; an environment without ipywidgets), a
    one-line note instead."""
    if not show.rich():
        return show.Text("No upload box in this kernel: set PHOTO_URI to a photo to answer it.")
    try:
        import ipywidgets as widgets
    except ImportError:
        return show.Text("No upload box here (ipywidgets is not installed): set PHOTO_URI.")
    from IPython.display import display  # an IPython kernel: rich() said so

    upload, shown = widgets.FileUpload(accept="image/*", multiple=False), widgets.Output()

    def answer(change) -> None:
        with shown:
            shown.clear_output()
            for item in change["new"]:
                found, figure = answer_photo(recognizer, bytes(item["content"]), item["name"])
                print(f"{item['name']}: {found.summary()}")
                if figure is not None:
                    display(figure)

    upload.observe(answer, names="value")
    return widgets.VBox([upload, shown])
