"""The Chinese edition keeps to its terminology table (chapters/zh/TERMINOLOGY.md).

Checked text: the markdown cells of chapters/zh/*.ipynb, the Chinese half of intro.md (from
`(zh-intro)=` on) and chapters/zh/notation.md. Code cells are not checked: they are shared with the
English edition (tests/test_notebooks.py).

The phrase list is explicit rather than clever: each entry is a rendering that once crept into the
book, the term the table prescribes instead, and why. A bare word is never forbidden where it is
right elsewhere (优化 is correct for the optimiser, 优化器; 单元 in 单元测试 is a unit test).
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZH = ROOT / "chapters" / "zh"
TABLE = ZH / "TERMINOLOGY.md"


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _zh_texts():
    """(name, text) for every checked piece of Chinese prose."""
    texts = []
    for path in sorted(ZH.glob("*.ipynb")):
        for k, cell in enumerate(_load(path)["cells"]):
            if cell["cell_type"] == "markdown":
                texts.append((f"zh/{path.name} cell {k}", _source(cell)))
    intro = (ROOT / "intro.md").read_text(encoding="utf-8")
    assert "(zh-intro)=" in intro, "intro.md lost its Chinese half's label"
    texts.append(("intro.md (zh)", intro[intro.index("(zh-intro)="):]))
    texts.append(("zh/notation.md", (ZH / "notation.md").read_text(encoding="utf-8")))
    return texts


def _chapter_prose():
    """{notebook name: its markdown cells joined}, Chinese edition."""
    return {path.name: "\n".join(_source(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown")
            for path in sorted(ZH.glob("*.ipynb"))}


def _table_rows():
    """The rows of TERMINOLOGY.md's table as lists of cells (English, 中文, 说明)."""
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and not re.match(r"^\|\s*-", line) and not line.startswith("| English"):
            rows.append([cell.strip() for cell in line.strip()[1:-1].split("|")])
    return rows


# (test id, regex of the wrong rendering, the term TERMINOLOGY.md prescribes, why)
FORBIDDEN = [
    ("refinement", r"深度图?优化", "深度图细化", "depth map refinement; 不用“优化”，以免与优化器混淆"),
    ("refine-network", r"的优化网络", "细化", "RefineNet is the refinement (细化) network, not an optimiser"),
    ("refined-depth", r"优化后的深度", "细化后的深度", "refined depth"),
    ("less-k-accuracy", r"less-(?:one|three) 准确率", "less-one / less-three 精度", "less-one / less-three accuracy"),
    ("threshold-accuracy", r"阈值准确率", "阈值精度", "threshold accuracy (delta1)"),
    ("batch-norm", r"批量归一化", "批量规范化", "batch normalization (BN), as in 《动手学深度学习》"),
    ("up-sampling-block", r"上采样模块", "上采样块", "up-sampling block"),
    ("code-cell", r"代码单元(?!格)", "单元格", "notebook cell"),
    ("parameters-cell", r"`parameters` 单元(?!格)|参数单元(?!格)", "参数单元格", "parameters cell"),
    ("compression-factor", r"压缩系数", "压缩因子", "DenseNet's compression factor"),
    ("stride", r"步长（stride）", "步幅", "stride"),
    ("luminance", r"亮度部分", "亮度项", "SSIM's luminance term"),
    ("contrast-structure", r"对比度-结构部分", "对比度-结构项", "SSIM's contrast-structure term"),
    ("hypothesis-band", r"假设范围", "假设区间", "(per-pixel) hypothesis band"),
    ("calibrated", r"标定过的", "已标定", "calibrated"),
    ("notebook", r"笔记本(?!电脑)", "Jupyter notebook", "不译作“笔记本”，以免与笔记本电脑混淆"),
]


@pytest.mark.parametrize("wrong, term, why", [entry[1:] for entry in FORBIDDEN], ids=[entry[0] for entry in FORBIDDEN])
def test_zh_prose_uses_the_prescribed_term(wrong, term, why):
    found = [f"{name}: …{text[max(0, m.start() - 15):m.end() + 15]}…".replace("\n", " ")
             for name, text in _zh_texts() for m in re.finditer(wrong, text)]
    assert not found, f"write {term} ({why}), not /{wrong}/:\n" + "\n".join(found)


def test_forbidden_list_points_at_terms_the_table_prescribes():
    # a replacement that is not in the table would make this file, not TERMINOLOGY.md, the authority
    table = "\n".join(zh for _, zh, *_ in _table_rows())
    missing = [term for _, _, term, _ in FORBIDDEN if term not in table]
    assert not missing, f"not in TERMINOLOGY.md's 中文 column: {missing}"


def test_terminology_table_rows_are_complete_and_chinese_terms_unique():
    rows = _table_rows()
    assert len(rows) > 50
    assert all(len(row) == 3 for row in rows), [row for row in rows if len(row) != 3]
    empty = [row for row in rows if not row[0] or not row[1]]
    assert not empty, f"rows without an English or a 中文 term: {empty}"
    seen = {}
    for english, zh, _ in rows:
        for term in (t.strip() for t in zh.split(" / ")):
            assert term, f"empty 中文 term in {zh!r}"
            seen.setdefault(term, []).append(english)
    duplicates = {term: ens for term, ens in seen.items() if len(ens) > 1}
    assert not duplicates, f"one 中文 term for several English ones: {duplicates}"


# the table's notes that spell out the first occurrence in a chapter: (the Chinese term as a regex,
# the English that must follow it in full-width brackets)
FIRST_OCCURRENCE = [
    (r"轮(?!廓|次)", "epoch"),                # epoch / batch / batch size / step: 首次出现写作“轮（epoch）”
    (r"梯度损失", "gradient loss"),           # gradient (edge) loss: 首次出现写作“梯度损失（gradient loss）”
]


@pytest.mark.parametrize("term, english", FIRST_OCCURRENCE, ids=[e for _, e in FIRST_OCCURRENCE])
def test_first_occurrence_in_a_chapter_names_the_english_term(term, english):
    wrong = []
    for name, text in _chapter_prose().items():
        m = re.search(term, text)
        if m and not re.match(r"\**（" + re.escape(english), text[m.end():]):
            wrong.append(f"{name}: …{text[max(0, m.start() - 15):m.end() + 15]}…".replace("\n", " "))
    assert not wrong, f"the first occurrence must read “…（{english}…）”:\n" + "\n".join(wrong)


CJK = re.compile(r"[\u4e00-\u9fff]")
# after a term: a few more characters of a longer compound (单应性变换), emphasis or a quote, then a
# full-width bracket with the English in it: 代价体（cost volume）, **遮挡**（occlusion）, 单应性变换（homography warping）
GLOSS_AFTER = re.compile(r"^[\u4e00-\u9fff]{0,6}[*\"”」]*（[^）]*[A-Za-z]")
GLOSS_INSIDE = re.compile(r"^，[^）]*[A-Za-z][^）]*）")      # （合并计算，pooled）


def _body_text(path):
    """A notebook's markdown prose as a reader meets it first: no headings (a gloss belongs in the
    text), no fenced blocks, no References section; code spans, math and link targets blanked."""
    lines = []
    for cell in _load(path)["cells"]:
        if cell["cell_type"] != "markdown" or _source(cell).startswith("## 参考文献"):
            continue
        fenced = False
        for line in _source(cell).split("\n"):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced or line.startswith("#"):
                continue
            line = re.sub(r"`[^`]*`", "``", line)
            line = re.sub(r"\$[^$]*\$", "$$", line)
            lines.append(re.sub(r"\]\([^)]*\)", "]()", line))
    return "\n".join(lines)


def _glossed_terms():
    """(English, 中文) for every table term that needs its English at its first occurrence: terms with
    Chinese in them (not soft-argmin or less-one), of two characters or more (轮 has its own test
    above), in rows not marked 常用词."""
    terms = []
    for english, zh, note in _table_rows():
        if "常用词" in note:
            continue
        zhs = [t.strip() for t in zh.split(" / ")]
        ens = [t.strip() for t in english.split(" / ")] if len(english.split(" / ")) == len(zhs) else [english] * len(zhs)
        for en, term in zip(ens, zhs):
            bare = re.sub(r"（[^）]*）", "", term).strip()
            if CJK.search(bare) and len(bare) >= 2:
                terms.append((en, bare))
    return terms


def test_every_term_gives_its_english_where_the_book_first_uses_it():
    """TERMINOLOGY.md: a term's first occurrence in the book's prose, in chapter order, reads
    中文（English）, so a reader can find it in the papers; after that, Chinese only."""
    book = [(path.name, _body_text(path)) for path in sorted(ZH.glob("*.ipynb"))]   # 00 .. 12, appendix
    assert [name[:2] for name, _ in book][:13] == [f"{k:02d}" for k in range(13)]
    bare = []
    for english, term in _glossed_terms():
        for name, text in book:
            i = text.find(term)
            if i < 0:
                continue
            after = text[i + len(term):]
            if not (GLOSS_AFTER.match(after) or (text[i - 1:i] == "（" and GLOSS_INSIDE.match(after))):
                bare.append(f"{name}: {term} ({english}): …{text[max(0, i - 15):i + len(term) + 15]}…".replace("\n", " "))
            break
    assert not bare, "first occurrences without their English:\n" + "\n".join(bare)
