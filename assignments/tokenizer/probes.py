# Probes of tokenizer: the grader appends this function to your notebook as its last cell and calls it to receive
# what your figures show (bar heights, tick labels, points, labels), as plain data.


def grading_figures() -> list:
    """For each open matplotlib figure, for each of its axes: bar heights, x tick labels, scatter points, texts."""
    import matplotlib.pyplot as plt

    figures = []
    for number in plt.get_fignums():
        figure = plt.figure(number)  # no canvas.draw(): the tick labels are read from the axis, not a rendering
        figures.append([{
            "bars": [float(p.get_height()) for p in ax.patches if type(p).__name__ == "Rectangle"],
            "xticklabels": [t.get_text() for t in ax.get_xticklabels()],
            "points": [[float(x), float(y)] for collection in ax.collections for x, y in collection.get_offsets()],
            "texts": [t.get_text() for t in ax.texts],
        } for ax in figure.axes])
    return figures
