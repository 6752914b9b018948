"""Sphinx extension: plotly.js, from the installed plotly package, on the pages that show a 3D view.

`depthlib.viz.show_point_clouds` (chapters 00 and 10) outputs a `<div class="depthlib-plot3d">`
with a static image and a script that swaps in the interactive plotly view once the page has
plotly.js. The rendered book must not request anything from the network (tests/test_browser.py),
so the book serves its own copy: `plotly.min.js` of the plotly package that executed the notebooks
(the same version that wrote the figures) is copied to `_static/` and loaded, deferred, only by
the pages whose body holds such a div (4.8 MB that other pages need not load). Plotly.js touches
MathJax only to typeset `$...$` in figure text, which the book's 3D views do not use.
"""
from pathlib import Path

PLOT3D_CLASS = "depthlib-plot3d"  # depthlib.viz.PLOT3D_CLASS (the extension does not import depthlib)
SCRIPT = "plotly.min.js"


def plotly_js() -> Path:
    """The plotly.min.js bundled with the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / SCRIPT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the plotly package has no bundled {SCRIPT}")
    return path


def page_needs_plotly(body: str) -> bool:
    """Whether a page body (HTML) holds a 3D view."""
    return f'class="{PLOT3D_CLASS}"' in body


def _add_script(app, pagename, templatename, context, doctree):
    if page_needs_plotly(context.get("body") or ""):
        app.add_js_file(SCRIPT, loading_method="defer")  # this page only (called in html-page-context)


def _copy_script(app):
    # before any page is written, so that each page's <script> carries the file's checksum
    if app.builder.format == "html":
        import shutil

        static = Path(app.outdir) / "_static"   # not there yet on a first build
        static.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plotly_js(), static / SCRIPT)


def setup(app):
    app.connect("builder-inited", _copy_script)
    app.connect("html-page-context", _add_script)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
