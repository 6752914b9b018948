"""Exercises numbered by chapter ("Exercise 12.1"), with Chinese labels on the Chinese pages.

The table of contents numbers no sections (every chapter's title carries its own "12 ·"), so
Sphinx gave every exercise of the book one running number: chapter 12's first exercise was
"Exercise 117", and its solution "Solution to Exercise 117". And a Sphinx build has one language,
so the Chinese pages showed sphinx-exercise's and Sphinx's English words: "Exercise", "Solution
to", "Hint".

This extension
- renumbers each chapter's exercises as (chapter, 1), (chapter, 2), ... in page order, where the
  chapter is the number its file name starts with ("A" for the appendix). Sphinx's own numbering
  (`env.toc_fignumbers`) is rewritten right after Sphinx computes it, so the exercise titles, the
  solution titles and `{numref}` links all read the same number;
- on the Chinese pages (chapters/zh/), writes 练习 for "Exercise", 提示 for "Hint", and a
  solution's title as "练习 12.1 的解答" (a link to the exercise, as on the English pages).
"""
from __future__ import annotations

import re

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform

# The words sphinx-exercise and Sphinx write, as the Chinese edition says them (its TERMINOLOGY
# page: 练习 / 提示 / 解答).
ZH_EXERCISE = "练习"
ZH_SOLUTION_OF = "的解答"
ZH_ADMONITIONS = {"hint": "提示", "note": "注意", "tip": "提示", "warning": "警告"}

_CHAPTER = re.compile(r"(\d+)_")


def chapter_label(docname: str) -> int | str | None:
    """The chapter a page's exercises are numbered under: 12 for ".../12_cascade", "A" for the
    appendix, None for a page that is not a chapter."""
    name = docname.rsplit("/", 1)[-1]
    match = _CHAPTER.match(name)
    if match:
        return int(match.group(1))
    return "A" if name.startswith("appendix") else None


def is_chinese(docname: str | None) -> bool:
    return bool(docname) and docname.split("/")[-2:-1] == ["zh"]


def number_exercises_by_chapter(app, env):
    """After Sphinx's TocTreeCollector has numbered every enumerable node of the book (one counter
    across all pages, as nothing is section-numbered), number each chapter's exercises from 1."""
    for docname, fignumbers in env.toc_fignumbers.items():
        exercises = fignumbers.get("exercise")
        chapter = chapter_label(docname)
        if not exercises or chapter is None:
            continue
        in_page_order = sorted(exercises, key=exercises.__getitem__)
        fignumbers["exercise"] = {ident: (chapter, index)
                                  for index, ident in enumerate(in_page_order, start=1)}
    return []


class ChineseSolutionTitles(SphinxPostTransform):
    """On a Chinese page, "Solution to Exercise 12.1" becomes "练习 12.1 的解答".

    Runs after sphinx-exercise has written the solution titles (its priority 21): such a title is
    the text "Solution to" and a link whose text is " Exercise 12.1"."""

    default_priority = 30

    def run(self, **kwargs):
        if not is_chinese(self.env.docname):
            return
        from sphinx_exercise.nodes import solution_node

        for solution in self.document.findall(solution_node):
            title = solution.children[0]
            links = [child for child in title.children if isinstance(child, nodes.reference)]
            if not isinstance(title, nodes.title) or len(links) != 1:
                continue
            link = links[0]
            number = re.sub(r"^\s*\S+\s*", "", link.astext())  # " Exercise 12.1" -> "12.1"
            link.children = []
            link += nodes.Text(f"{ZH_EXERCISE} {number}")
            title.children = []
            title += link
            title += nodes.Text(f" {ZH_SOLUTION_OF}")
            solution["title"] = f"{ZH_EXERCISE} {number} {ZH_SOLUTION_OF}"


def _translator_with_chinese_labels(base):
    class ChineseLabels(base):
        """The HTML translator, writing 练习 / 提示 on the Chinese pages."""

        def _chinese(self) -> bool:
            return is_chinese(getattr(self.builder, "current_docname", None))

        def add_fignumber(self, node):
            domain = self.builder.env.domains["std"]
            if self._chinese() and domain.get_enumerable_node_type(node) == "exercise" \
                    and node["ids"]:
                number = self.builder.fignumbers.get("exercise", {}).get(node["ids"][0])
                if number:
                    self.body.append('<span class="caption-number">'
                                     f'{ZH_EXERCISE} {".".join(map(str, number))} </span>')
                    return
            super().add_fignumber(node)

        def visit_admonition(self, node, name=""):
            if name and name in ZH_ADMONITIONS and self._chinese():
                # Sphinx's own two lines, with the Chinese label in the title
                self.body.append(self.starttag(node, "div", CLASS="admonition " + name))
                node.insert(0, nodes.title(name, ZH_ADMONITIONS[name]))
                return
            super().visit_admonition(node, name)

    ChineseLabels.__name__ = f"ChineseLabels{base.__name__}"
    return ChineseLabels


def _install_translator(app):
    if app.builder.format != "html":
        return
    base = app.registry.get_translator_class(app.builder)
    app.set_translator(app.builder.name, _translator_with_chinese_labels(base), override=True)


def setup(app):
    app.setup_extension("sphinx_exercise")
    # after TocTreeCollector.get_updated_docs (priority 500), which assigns the figure numbers
    app.connect("env-get-updated", number_exercises_by_chapter, priority=900)
    app.connect("builder-inited", _install_translator)
    app.add_post_transform(ChineseSolutionTitles)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
