"""Matplotlib figures for runs: training curves, confusion matrix, ROC / PR curves, image grids."""

import matplotlib

matplotlib.use("Agg")  # files only: runs happen on servers without a display
import matplotlib.pyplot as plt  # ruff's E402 allows imports after matplotlib.use()
import numpy as np


def training_curves(history):
    """One panel per metric with its train and validation curves.

    Args:
        history (dict[str, list[float]]): Keras `History.history`.
    """
    names = [name for name in history if not name.startswith("val_") and name != "learning_rate"]
    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], label="train")
        if f"val_{name}" in history:
            axis.plot(epochs, history[f"val_{name}"], label="validation")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.legend()
    figure.tight_layout()
    return figure


def confusion_matrix(matrix, class_names):
    """A confusion-matrix heatmap with counts in the cells."""
    size = max(4, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(
            column,
            row,
            int(value),
            ha="center",
            va="center",
            color="white" if value > threshold else "black",
            fontsize=8,
        )
    figure.tight_layout()
    return figure


def curves(lines, x_label, y_label, title, diagonal=False):
    """Several labelled curves on one axis (ROC, PR, calibration).

    Args:
        lines (list[tuple[str, np.ndarray, np.ndarray]]): (label, x, y) per curve.
    """
    figure, axis = plt.subplots(figsize=(5, 4.5))
    for label, x, y in lines:
        axis.plot(x, y, label=label)
    if diagonal:
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def intervals(bars, x_label, title):
    """One horizontal bar per group with its interval; groups too small to count are drawn in grey.

    Args:
        bars (list[tuple[str, float, float, float, bool]]): (label, value, lower, upper, counted) per group.
    """
    figure, axis = plt.subplots(figsize=(5.5, 1.2 + 0.3 * len(bars)))
    positions = np.arange(len(bars))[::-1]
    for position, (_, value, lower, upper, counted) in zip(positions, bars):
        error = [[max(value - lower, 0)], [max(upper - value, 0)]] if np.isfinite([lower, upper]).all() else None
        axis.barh(position, value, xerr=error, color="tab:blue" if counted else "lightgrey", capsize=3)
    axis.set_yticks(positions, [label[:30] for label, *_ in bars], fontsize=7)
    axis.set_xlabel(x_label)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def image_grid(images, titles, columns=8):
    """Images in a grid with a title each (sample predictions)."""
    rows = int(np.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, images, titles):
        axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        axis.set_title(title, fontsize=7)
    figure.tight_layout()
    return figure


def close(figures):
    """Frees the figures' memory."""
    for figure in figures:
        plt.close(figure)


def _class_colors(count):
    """One RGB colour per class; class 0 (usually background) is black."""
    colors = plt.get_cmap("tab10" if count <= 10 else "tab20")(np.arange(max(count - 1, 1)))[:, :3]
    return np.concatenate([np.zeros((1, 3)), colors])[:count]


def segmentation_overlays(images, true_masks, predicted_masks, class_names):
    """One row per image: the image, the true mask over it, the predicted mask over it.

    Args:
        images (np.ndarray): (n, h, w, c) in [0, 1].
        true_masks (np.ndarray): (n, h, w) class indices.
        predicted_masks (np.ndarray): (n, h, w) class indices.
        class_names (list[str]): names for the legend.
    """
    colors = _class_colors(len(class_names))
    figure, axes = plt.subplots(len(images), 3, figsize=(7.5, 2.5 * len(images)), squeeze=False)
    for row, (image, truth, predicted) in enumerate(zip(images, true_masks, predicted_masks)):
        base = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
        for column, (mask, title) in enumerate(((None, "image"), (truth, "true mask"), (predicted, "predicted"))):
            axes[row, column].imshow(np.clip(base, 0, 1) if mask is None else _mask_over(base, mask, colors))
            axes[row, column].set_title(title, fontsize=8)
            axes[row, column].axis("off")
    return _class_legend(figure, colors, class_names)


def _mask_over(base, mask, colors):
    """An RGB image with each non-background class of `mask` tinted in its colour."""
    return np.clip(np.where(mask[..., None] > 0, 0.45 * base + 0.55 * colors[mask], base), 0, 1)


def _class_legend(figure, colors, class_names):
    """Lays the figure out above a legend of the class colours."""
    handles = [matplotlib.patches.Patch(color=colors[index], label=name) for index, name in enumerate(class_names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(6, len(class_names)), fontsize=7)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return figure


def class_saliency_rows(images, masks, heatmaps, class_names, titles, title=""):
    """One row per image: the image, its predicted mask over it, and the saliency heatmap of each class the mask
    holds (what the model's belief in that class over its pixels rests on).

    Args:
        images (np.ndarray): (n, h, w, c) in [0, 1].
        masks (np.ndarray): (n, h, w) predicted class indices.
        heatmaps (np.ndarray): (n, classes, h, w) in [0, 1].
        class_names (list[str]): the classes.
        titles (list[str]): one per image.
        title (str): above them all (empty: none).
    """
    colors = _class_colors(len(class_names))
    present = [np.unique(mask) for mask in masks]
    columns = 2 + max(len(labels) for labels in present)
    figure, axes = plt.subplots(len(images), columns, figsize=(2.0 * columns, 2.1 * len(images)), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, (image, mask, maps, labels, name) in enumerate(zip(images, masks, heatmaps, present, titles)):
        base = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
        axes[row, 0].imshow(np.clip(base, 0, 1))
        axes[row, 0].set_title(name, fontsize=7)
        axes[row, 1].imshow(_mask_over(base, mask, colors))
        axes[row, 1].set_title("predicted", fontsize=7)
        for column, label in enumerate(labels, start=2):
            axes[row, column].imshow(np.clip(base, 0, 1))
            axes[row, column].imshow(maps[label], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            axes[row, column].set_title(f"saliency: {class_names[label]}", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    return _class_legend(figure, colors, class_names)


def heatmap_overlays(images, heatmaps, titles, columns=4, title=""):
    """Images with a heatmap (Grad-CAM, saliency) blended over each, titled (`title` above them all)."""
    rows = int(np.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, heatmap, name in zip(axes.flat, images, heatmaps, titles):
        axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        axis.imshow(heatmap, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        axis.set_title(name, fontsize=7)
    return _titled(figure, title)


def attribution_bars(weights, names, titles, columns=4, top=10, title=""):
    """One panel per example: its `top` features by |weight| as horizontal bars, red for, blue against.

    Args:
        weights (np.ndarray): (n, features) signed attributions.
        names (list[str]): the features' names.
        titles (list[str]): one title per example.
        columns (int): panels per row.
        top (int): features drawn per panel (more are unreadable at this size).
        title (str): above them all (empty: none).
    """
    columns = min(columns, len(weights))
    rows = int(np.ceil(len(weights) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 0.9 + 0.22 * top * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, row, name in zip(axes.flat, weights, titles):
        axis.axis("on")
        order = np.argsort(-np.abs(row), kind="stable")[:top][::-1]
        axis.barh(np.arange(len(order)), row[order], color=np.where(row[order] >= 0, "tab:red", "tab:blue"))
        axis.set_yticks(np.arange(len(order)), [str(names[index])[:24] for index in order], fontsize=6)
        axis.axvline(0, color="grey", linewidth=0.5)
        axis.tick_params(axis="x", labelsize=6)
        axis.set_title(name, fontsize=7)
    return _titled(figure, title)


def attribution_maps(maps, titles, x_label, y_label, row_names=None, columns=4, title=""):
    """One signed map per example (red for, blue against, white neutral; each on its own symmetric scale).

    Args:
        maps (np.ndarray): (n, rows, columns): sensors x time steps, frequency bins x frames...
        titles (list[str]): one title per example.
        x_label (str): what the columns are.
        y_label (str): what the rows are (drawn bottom-up).
        row_names (list[str] | None): tick labels of the rows; None leaves them numbered.
        columns (int): panels per row.
        title (str): above them all (empty: none).
    """
    columns = min(columns, len(maps))
    rows = int(np.ceil(len(maps) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, values, name in zip(axes.flat, maps, titles):
        axis.axis("on")
        scale = max(float(np.abs(values).max()), 1e-12)
        axis.imshow(values, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-scale, vmax=scale)
        if row_names is not None:
            axis.set_yticks(np.arange(len(row_names)), [str(name)[:16] for name in row_names], fontsize=5)
        axis.set_xlabel(x_label, fontsize=7)
        axis.set_ylabel(y_label, fontsize=7)
        axis.tick_params(labelsize=6)
        axis.set_title(name, fontsize=7)
    return _titled(figure, title)


def token_weights(tokens, weights, titles, title=""):
    """One block per example: its title, then its tokens in order, each on a background red for, blue against
    and white neutral (each example on its own symmetric scale), wrapped to the figure's width.

    Args:
        tokens (list[np.ndarray]): per example, its tokens (padding left out).
        weights (list[np.ndarray]): per example, a signed weight per token.
        titles (list[str]): one title per example.
        title (str): above them all (empty: none).
    """
    from matplotlib.font_manager import FontProperties

    # Layout in points (1/72 inch) from the top left: 8-point words on 14-point lines across 9 inches.
    width, size, line, gap = 648.0, 8, 14.0, 4.0
    figure = plt.figure()
    renderer = figure.canvas.get_renderer()
    font = FontProperties(size=size)
    placed, y = [], 0.0
    if title:
        placed.append((gap, y + line / 2, title, None, 9, "black"))
        y += 1.5 * line
    for words, row, name in zip(tokens, weights, titles):
        placed.append((gap, y + line / 2, name.replace("\n", " | "), None, 7, "black"))
        x, y = gap, y + line
        scale = max(float(np.abs(row).max()) if len(row) else 0.0, 1e-12)
        for word, weight in zip(words, row):
            extent = renderer.get_text_width_height_descent(str(word), font, ismath=False)[0] * 72 / figure.dpi
            if x + extent > width - gap and x > gap:
                x, y = gap, y + line
            shade = 0.5 + 0.5 * weight / scale
            ink = "white" if abs(weight) > 0.6 * scale else "black"  # dark backgrounds need light letters
            placed.append((x, y + line / 2, str(word), plt.get_cmap("RdBu_r")(shade), size, ink))
            x += extent + gap
        y += 1.6 * line
    figure.set_size_inches(width / 72, y / 72)
    axis = figure.add_axes((0, 0, 1, 1))
    axis.set_xlim(0, width)
    axis.set_ylim(y, 0)
    axis.axis("off")
    for x, middle, text, color, points, ink in placed:
        box = None if color is None else {"facecolor": color, "edgecolor": "none", "pad": 1.0}
        axis.text(x, middle, text, fontsize=points, color=ink, va="center", bbox=box, parse_math=False)
    return figure


def _titled(figure, title):
    """Lays the figure out, with `title` above its panels when given."""
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def spectrogram_grid(spectrograms, titles, columns=4):
    """Spectrograms (time across, frequency up) in a grid with a title each (sample predictions).

    Args:
        spectrograms (np.ndarray): (n, frames, bins) or (n, frames, bins, channels); channel 0 is drawn.
        titles (list[str]): one title per spectrogram.
    """
    rows = int(np.ceil(len(spectrograms) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, spectrogram, title in zip(axes.flat, spectrograms, titles):
        spectrogram = np.asarray(spectrogram)
        axis.imshow(
            (spectrogram[..., 0] if spectrogram.ndim == 3 else spectrogram).T,
            origin="lower",
            aspect="auto",
            cmap="magma",
        )
        axis.set_title(title, fontsize=7)
    figure.tight_layout()
    return figure
