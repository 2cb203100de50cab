"""experiment=recipe_{ranking,regression,classification}: each composes with every task of its type (custom
included), sets the levers docs/results.md chose it by, refuses a task of another type before anything is
written, and a tiny fit on a user's own files (task=custom) trains with those levers: what reaches the
loss (labelled negatives or positives only, for how many epochs), and which strategy built the batches.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fixtures import make_cfg
from omegaconf import OmegaConf

from bsc_lightning import CONF_DIR
from bsc_lightning.choose import variant_configs
from bsc_lightning.data.batching import ExampleShuffle, RandomShuffle
from bsc_lightning.losses import BSCLoss, MSELoss
from bsc_lightning.module import BSCModule
from bsc_lightning.run import ConfigError, build, train

RECIPES = ("ranking", "regression", "classification")


def tasks_of(kind: str) -> list[str]:
    """conf/task/*.yaml of a type (custom is any type)."""
    out = []
    for p in sorted((Path(CONF_DIR) / "task").glob("*.yaml")):
        if p.stem != "custom" and OmegaConf.load(p).type == kind:
            out.append(p.stem)
    return out


def custom_type(kind: str) -> list[str]:
    metric = {"ranking": "map", "regression": "spearman", "classification": "f1"}[kind]
    return ["task=custom", f"task.type={kind}", f"task.main_metric={metric}"]


# the levers of each recipe: (loss, batch strategy, positives only, τ or None, epochs, lr); one stage each
LEVERS = {"ranking": (BSCLoss, ExampleShuffle, False, 0.07, 1, 3e-5),
          "regression": (MSELoss, RandomShuffle, False, None, 2, 2e-5),
          "classification": (MSELoss, RandomShuffle, False, None, 3, 2e-5)}


def check_levers(cfg, kind: str) -> None:
    loss_cls, shuffle_cls, positives_only, tau, epochs, lr = LEVERS[kind]
    loss = build(cfg.loss, "loss")
    assert type(loss) is loss_cls
    if tau is not None:  # the BSC recipe's own settings
        assert loss.symmetric is True and loss.duplicates == "positive" and loss.normalization == "l2"
        assert loss.temperature == pytest.approx(tau)
        assert loss.positive_threshold == pytest.approx(cfg.task.positive_threshold)
    assert cfg.stage2 is None
    assert cfg.trainer.max_epochs == epochs
    assert cfg.model.optimizer.lr == pytest.approx(lr)
    assert type(build(cfg.shuffle, "shuffle")) is shuffle_cls
    assert cfg.data.train_positives_only is positives_only  # False: labelled pairs are trained on
    # ranking: at most 7 negatives per answered query, in their question's batch; others: every pair
    assert cfg.data.train_negatives_per_query == (7 if kind == "ranking" else None)
    if kind == "ranking":
        assert build(cfg.shuffle, "shuffle").keep_identical_apart is False
    # ranking: the best checkpoint interpolated with the pretrained encoder at the dev-chosen α of these
    assert cfg.interpolate == ([0.5, 0.7, 0.85, 1.0] if kind == "ranking" else None)
    assert cfg.recipe.task_type == kind == cfg.task.type
    if kind != "ranking":
        assert cfg.choose is None
        return
    # ranking: that run, positives-only in-batch softmax in random batches, or MSE on every labelled pair in random
    # batches at lr 2e-5, whichever has the best dev score
    variants = variant_configs(cfg)
    assert list(variants) == ["hard_negatives", "positives_only", "mse"]
    hard, positives, mse = variants.values()
    assert OmegaConf.to_container(hard) == {**OmegaConf.to_container(cfg), "choose": None}
    assert positives.data.train_positives_only is True and positives.data.train_negatives_per_query is None
    assert type(build(positives.shuffle, "shuffle")) is RandomShuffle
    assert positives.interpolate == cfg.interpolate and positives.loss == cfg.loss and positives.model == cfg.model
    assert mse.data.train_positives_only is False and mse.data.train_negatives_per_query is None
    assert OmegaConf.to_container(mse.loss) == {"_target_": "bsc_lightning.losses.MSELoss"}
    assert type(build(mse.shuffle, "shuffle")) is RandomShuffle
    assert mse.model.optimizer.lr == 2e-5 and cfg.model.optimizer.lr == 3e-5
    assert mse.interpolate == cfg.interpolate and mse.encoder == cfg.encoder
    mse_model, model = OmegaConf.to_container(mse.model), OmegaConf.to_container(cfg.model)
    del mse_model["optimizer"]["lr"], model["optimizer"]["lr"]
    assert mse_model == model  # only the lr differs


@pytest.mark.parametrize("kind,task", [(k, t) for k in RECIPES for t in [*tasks_of(k), "custom"]])
def test_recipe_composes_with_every_task_of_its_type(kind, task):
    over = custom_type(kind) if task == "custom" else [f"task={task}"]
    cfg = make_cfg([f"experiment=recipe_{kind}", *over])
    assert cfg.task.name == task
    check_levers(cfg, kind)


@pytest.mark.parametrize("kind", RECIPES)
def test_recipe_alone_picks_a_task_of_its_type(kind):
    cfg = make_cfg([f"experiment=recipe_{kind}"])
    assert cfg.task.type == kind
    check_levers(cfg, kind)


@pytest.mark.parametrize("kind,task", [("ranking", "stsb"), ("regression", "wikiqa"), ("classification", "stsb")])
def test_recipe_refuses_another_task_type(kind, task, tmp_path):
    cfg = make_cfg([f"experiment=recipe_{kind}", f"task={task}"])
    with pytest.raises(ConfigError, match=f"recipe_{cfg.task.type}"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def write_custom(kind: str, folder: Path) -> list[str]:
    """A user's files of each type: 12 questions × 4 answers (one correct) for ranking; graded [0, 1]
    scores for regression; 0/1 for classification."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["text_a,text_b,label,qid"]
    for i in range(48):
        q, j = i // 4, i % 4
        label = {"ranking": float(j == 0), "regression": round(((q + j) % 6) / 5, 2),
                 "classification": float((q + j) % 2)}[kind]
        rows.append(f"question {q} about topic {q % 5},answer {j} on theme {(q + j) % 7},{label},q{q}")
    for split in ("train", "dev", "test"):
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return [*custom_type(kind), f"task.data_dir={folder}", "+task.options.columns.qid=qid",
            "task.positive_threshold=0.5"]


@pytest.mark.parametrize("kind", RECIPES)
def test_recipe_tiny_fit_on_custom_files(kind, tiny_bert, tmp_path, monkeypatch):
    """What reaches the loss: every labelled pair (negatives included) or positives only, and for how many
    epochs; which strategy orders the batches."""
    seen: list[tuple[str, int, int]] = []  # (loss, positives, negatives) per training call

    def spy(cls):
        forward = cls.forward

        def wrapped(self, q, a, labels=None, *args, **kwargs):
            if self.training and labels is not None:
                pos = int((labels > 0.5).sum())
                seen.append((cls.__name__, pos, len(labels) - pos))
            return forward(self, q, a, labels, *args, **kwargs)
        monkeypatch.setattr(cls, "forward", wrapped)

    for cls in (BSCLoss, MSELoss):
        spy(cls)
    lrs = optimizer_lrs(monkeypatch)
    ordered: list[str] = []
    for cls in (ExampleShuffle, RandomShuffle):
        order = cls.order

        def rec(self, *args, _order=order, **kwargs):
            ordered.append(type(self).__name__)
            return _order(self, *args, **kwargs)
        monkeypatch.setattr(cls, "order", rec)

    base = [f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=cpu", "data.batch_size=8",
            "logger=csv", f"data.cache_dir={tmp_path / 'cache'}", "export=false", "shuffle.n_candidates=8"
            if kind == "ranking" else "data.limit_eval=48"]
    # ranking: the hard-negative run alone (choose=null); both runs of the recipe: test_choose
    choose = ["choose=null"] if kind == "ranking" else []
    cfg = make_cfg([f"experiment=recipe_{kind}", *base, *choose, *write_custom(kind, tmp_path / "data")])
    metrics = train(cfg, tmp_path / "run")
    main = cfg.task.main_metric
    assert f"test/{main}" in metrics and f"dev/{main}" in metrics
    if kind == "ranking":  # each α validated on dev, the chosen one's dev score is the tested weights' dev
        scores = {a: metrics[f"interpolate/dev_{main}@{a:g}"] for a in (0.5, 0.7, 0.85, 1.0)}
        assert metrics["interpolate/alpha"] == max(scores, key=lambda a: (scores[a], a))
        assert metrics[f"dev/{main}"] == pytest.approx(scores[metrics["interpolate/alpha"]], abs=1e-6)
    else:
        assert not any(k.startswith("interpolate/") for k in metrics)
    loss_cls, shuffle_cls, positives_only, _, epochs, lr = LEVERS[kind]
    assert lrs == [[lr, lr]]  # the recipe's lr reaches both encoder groups of the optimiser
    assert {s[0] for s in seen} == {loss_cls.__name__}
    positives = sum(s[1] for s in seen if s[0] == loss_cls.__name__)
    negatives = sum(s[2] for s in seen if s[0] == loss_cls.__name__)
    assert positives > 0
    assert (negatives == 0) if positives_only else (negatives > 0), negatives
    if not positives_only:  # every epoch trains on all 48 pairs: 6 batches of 8 per epoch
        assert len(seen) == 6 * epochs and positives + negatives == 48 * epochs
    assert ordered == [shuffle_cls.__name__] * epochs  # batches rebuilt once per epoch, by the recipe's strategy


def optimizer_lrs(monkeypatch) -> list[list[float]]:
    """Per optimiser built: the initial lr of each parameter group, as the optimiser got it."""
    lrs: list[list[float]] = []
    configure = BSCModule.configure_optimizers

    def spy(self):
        out = configure(self)
        lrs.append([g["initial_lr"] for g in out["optimizer"].param_groups])
        return out
    monkeypatch.setattr(BSCModule, "configure_optimizers", spy)
    return lrs


def bsc_labels(monkeypatch, loss_cls: type = BSCLoss) -> list[tuple[int, int]]:
    """(positives, labelled negatives) of every training batch that reaches the loss (BSC unless told)."""
    seen: list[tuple[int, int]] = []
    forward = loss_cls.forward

    def wrapped(self, q, a, labels=None, *args, **kwargs):
        if self.training:
            pos = int((labels > 0.5).sum())
            seen.append((pos, len(labels) - pos))
        return forward(self, q, a, labels, *args, **kwargs)
    monkeypatch.setattr(loss_cls, "forward", wrapped)
    return seen


@pytest.mark.parametrize("k,apart", [(1, False), (2, False), (1, True)])
def test_negatives_per_query_reach_the_loss(k, apart, tiny_bert, tmp_path, monkeypatch):
    """data.train_negatives_per_query=k from the command line: the loss sees every positive and k labelled
    negatives of each question (12 questions × 4 answers, one correct), in every epoch of a 2-epoch fit, and
    shuffle.keep_identical_apart decides whether a question's pairs share a batch."""
    seen = bsc_labels(monkeypatch)
    together: list[float] = []  # per epoch: share of questions whose kept pairs all sit in one batch
    order = ExampleShuffle.order

    def ordered(self, table, *args, **kwargs):
        idx = order(self, table, *args, **kwargs)
        batch_of = {int(r): i // 8 for i, r in enumerate(idx)}
        questions = {int(q): {batch_of[r] for r in range(len(table)) if table.a[r] == q} for q in set(table.a)}
        together.append(sum(len(b) == 1 for b in questions.values()) / len(questions))
        return idx
    monkeypatch.setattr(ExampleShuffle, "order", ordered)

    cfg = make_cfg(["experiment=recipe_ranking", "choose=null", f"encoder.name_or_path={tiny_bert}",
                    "encoder.max_length=32", "trainer=cpu", "trainer.max_epochs=2", "data.batch_size=8", "logger=csv", "export=false",
                    f"data.cache_dir={tmp_path / 'cache'}", "shuffle.n_candidates=8",
                    f"shuffle.keep_identical_apart={str(apart).lower()}", "data.train_positives_only=false",
                    f"data.train_negatives_per_query={k}", *write_custom("ranking", tmp_path / "data")])
    train(cfg, tmp_path / "run")
    assert sum(p for p, _ in seen) == 12 * 2 and sum(n for _, n in seen) == 12 * k * 2
    # 2 epochs, 2 orders. The recipe's grouping fills a group with one question's pairs first (k = 1: two
    # pairs, four questions per group of 8 = batch); apart, a question's pairs go to different groups.
    assert len(together) == 2
    assert all(t <= 0.2 for t in together) if apart else all(t >= (1.0 if k == 1 else 0.4) for t in together)


@pytest.mark.parametrize("positives_only", [True, False])
def test_mse_on_a_file_without_negatives_warns(positives_only, tiny_bert, tmp_path, caplog):
    """recipe_ranking's mse run on a user's file of positives alone: every label is 1, so the run says so (once)
    before training; with labelled negatives it stays quiet."""
    cfg = make_cfg(["loss=mse", f"data.train_positives_only={str(positives_only).lower()}",
                    f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=cpu", "data.batch_size=8",
                    "logger=csv", "export=false", f"data.cache_dir={tmp_path / 'cache'}",
                    *write_custom("ranking", tmp_path / "data")])
    with caplog.at_level(logging.WARNING, logger="bsc_lightning.module"):
        train(cfg, tmp_path / "run")
    warned = [r.getMessage() for r in caplog.records if "every training label is" in r.getMessage()]
    message = ("every training label is 1: MSELoss learns from labelled differences, so it only moves every "
               "cosine towards 1 (a file without labelled negatives?)")
    assert warned == ([message] if positives_only else [])
