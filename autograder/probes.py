# Probes every exercise has: the grader appends this source (before the exercise's own probes.py) as the notebook's
# last cell and calls these functions to receive, as plain data, what a student function did inside the student
# process. Students may read it; nothing of the grader's checks is here.


def grading_model_feed(model_name: str, function_name: str, args: list, kwargs: dict, model_first: bool = False):
    """Call the notebook function `function_name(*args, **kwargs)` (with the model as its first argument when
    `model_first`) and record what the model held in the variable `model_name` was fed meanwhile: the first two
    token ids of every forward pass over two tokens or more (a prompt, not one step of a decoding loop).

    Returns {"result": the function's result, "starts": [[id, id], ...]}. Where a step must tokenize in one exact
    way (one begin-of-text token, not two), this shows it, whatever the model makes of the difference."""
    model = globals()[model_name]
    function = globals()[function_name]
    starts = []

    def record(module, positional):
        ids = positional[0] if positional else None
        if getattr(ids, "dim", lambda: 0)() == 2 and ids.shape[1] >= 2:
            starts.append([int(i) for i in ids[0, :2].tolist()])

    # On the token-embedding layer: every forward pass (through a pipeline, generate or a LoRA wrapper) reads its ids.
    hook = model.get_input_embeddings().register_forward_pre_hook(record)
    try:
        result = function(*([model] if model_first else []), *args, **kwargs)
    finally:
        hook.remove()
    return {"result": result, "starts": starts}
