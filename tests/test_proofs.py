"""Every bundled exercise passes validate's proofs, one test per declared answer (so they run in parallel).

The same functions `autograder validate` uses judge each answer: a wrong answer loses exactly the checks its
`solutions/<ex>/answers.toml` entry names, a correct variant keeps full marks, outputs copied from a run with the
notebook's own parameters lose every check not marked constant, and the same bytes always get the same grade.
"""

from __future__ import annotations

import nbformat
import pytest

from autograder.answers import load_answers
from autograder.checking import check_steps, constant_checks
from autograder.exercise import Exercise, available
from autograder.grading import Grader
from autograder.validation import answers_file, copied_output_proof, judge_correct, judge_wrong
from conftest import failed_checks, solution_path, student_path

EXERCISES = available()
ANSWERS = {name: load_answers(answers_file(Exercise(name))) for name in EXERCISES}
_GRADERS: dict[str, Grader] = {}


def grader_for(exercise: str) -> Grader:
    if exercise not in _GRADERS:
        _GRADERS[exercise] = Grader(Exercise(exercise))
    return _GRADERS[exercise]


def _solution(exercise: str) -> nbformat.NotebookNode:
    return nbformat.read(solution_path(exercise), as_version=4)


def _cases(kind: str) -> list:
    return [pytest.param(ex, a, id=f"{ex}: {a.name}") for ex in EXERCISES for a in getattr(ANSWERS[ex], kind)]


def test_every_exercise_declares_wrong_answers():
    assert all(ANSWERS[ex].wrong for ex in EXERCISES), {ex: len(ANSWERS[ex].wrong) for ex in EXERCISES}


@pytest.mark.parametrize(("exercise", "answer"), _cases("wrong"))
def test_declared_wrong_answer_loses_exactly_its_checks(exercise, answer):
    losses, problems = judge_wrong(grader_for(exercise), _solution(exercise), answer, check_steps(Exercise(exercise)))
    assert problems == []
    assert set(losses) == set(answer.loses)


@pytest.mark.parametrize(("exercise", "answer"), _cases("correct"))
def test_declared_correct_answer_keeps_full_marks(exercise, answer):
    assert judge_correct(grader_for(exercise), _solution(exercise), answer) == []


@pytest.mark.parametrize("exercise", EXERCISES)
def test_copied_outputs_lose_every_check_not_declared_constant(exercise):
    grader = grader_for(exercise)
    seen = []
    solution = grader.rubric.score(grader.run(solution_path(exercise).read_bytes(), "solution", observe=seen.append))
    assert failed_checks(solution) == set()
    ran = {c.id for c in solution.checks if c.outcome != "not_run"}
    constant = constant_checks(Exercise(exercise))
    proof = copied_output_proof(grader, solution_path(exercise).read_bytes(),
                                nbformat.read(student_path(exercise), as_version=4), seen[0].values_read, constant, ran)
    assert proof.problems == []
    assert set(proof.lost) == ran - set(constant) | (set(proof.lost) & set(constant))
    assert not proof.left_out, "every value the checks read has a literal form, so the copy is complete"


def _random_cases() -> list:
    return [pytest.param(ex, a, id=f"{ex}: {a.name}") for ex in EXERCISES for a in ANSWERS[ex].wrong if a.random]


@pytest.mark.parametrize(("exercise", "answer"), _random_cases())
def test_randomness_sensitive_answer_gets_the_same_grade_every_time(exercise, answer):
    """Seeded from the notebook's bytes: three gradings of the same file, three identical outcomes."""
    from autograder.answers import apply_edits

    grader = grader_for(exercise)
    data = apply_edits(_solution(exercise), answer.edit, answer.name)
    runs = [[(c.id, c.outcome, c.message) for c in grader.grade_bytes(data, answer.name).checks] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert {c for c, outcome, _ in runs[0] if outcome == "failed"} == set(answer.loses)


def test_every_exercise_has_a_randomness_sensitive_answer_where_it_samples():
    sampling = {"tokenizer", "prompting", "sft_lora"}
    assert sampling <= {ex for ex in EXERCISES if any(a.random for a in ANSWERS[ex].wrong)}


def test_a_new_exercise_passes_validate_with_its_matrix(tmp_path, monkeypatch):
    """`autograder new` scaffolds an exercise whose declared answers, copy proof and kill matrix all hold."""
    from conftest import ROOT
    from typer.testing import CliRunner

    from autograder.cli import app

    monkeypatch.setenv("AUTOGRADER_COURSE_DIR", str(tmp_path))
    monkeypatch.setenv("AUTOGRADER_CACHE", str(ROOT / ".cache"))
    runner = CliRunner()
    assert runner.invoke(app, ["new", "squares_demo"]).exit_code == 0
    assert (tmp_path / "hidden_checks" / "squares_demo" / "test_hidden.py").is_file()
    assert not (ROOT / "hidden_checks" / "squares_demo").exists()  # nothing written into the bundled course
    result = runner.invoke(app, ["validate", "squares_demo"])
    assert result.exit_code == 0, result.output
    assert "W3" in result.output and "scale adds the factor" in result.output
    assert "copied outputs pass" not in result.output and "no wrong answer catches it" not in result.output
    assert "✓ squares_demo" in result.output


def test_validate_names_each_unsound_part(course_copy):
    """A grading input equal to the notebook's own, a wrong answer that loses nothing and a check no answer catches
    each end in a sentence and exit status 1."""
    from typer.testing import CliRunner

    from autograder.cli import app

    meta = course_copy / "assignments" / "t5_decoding" / "exercise.toml"
    meta.write_text(meta.read_text().replace('PROMPT = "translate English to German: Good morning, my friend."',
                                             'PROMPT = "The capital of France is"'))
    answers = course_copy / "solutions" / "t5_decoding" / "answers.toml"
    text = answers.read_text()
    cut = text.index('[[wrong]]\nname = "a cell that raises"')
    text = text[:cut] + text[text.index("[[wrong]]", cut + 1):]  # the only answer that catches test_translation
    answers.write_text(text + '\n[[wrong]]\nname = "a harmless comment"\nloses = ["test_translation"]\n'
                       '[[wrong.edit]]\nappend = "# nothing wrong here"\n')
    result = CliRunner().invoke(app, ["validate", "t5_decoding"])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "test_next_token_argmax keeps its points on outputs copied" in out
    assert "wrong answer 'a harmless comment' keeps full marks" in out
    assert "no declared wrong answer loses points on test_translation" in out


def test_stand_in_tokenizers_are_the_same_in_every_process():
    """Two processes build the same T5 and Llama stand-in tokenizers (hash-map order once made the T5 one differ),
    so the proofs made on one build hold on every other."""
    import subprocess
    import sys

    code = ("import hashlib, json; from autograder.models.tokenizers import t5_tokenizer, llama3_tokenizer; "
            "print(hashlib.sha256(json.dumps([sorted(t5_tokenizer().get_vocab().items()), "
            "sorted(llama3_tokenizer().get_vocab().items())]).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
               for _ in range(2)}
    assert len(digests) == 1 and len(digests.pop().strip()) == 64
