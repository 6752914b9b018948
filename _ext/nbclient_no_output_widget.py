"""Sphinx extension for `make book`: execute chapters without nbclient's Output-widget mimic.

nbclient imitates the ipywidgets Output widget while it executes a notebook: it answers every
output a widget captures with a comm message sent on the kernel's shell channel, where nbclient is
waiting for the cell's execute reply. In this book's widget cells that reply was then often noticed
only when the 600 s cell timeout ran out (chapter 07 took 610 s instead of 9 s under `make book`;
cf. jupyter/nbclient#312). The mimic only fills in what the Output widgets show, and the rendered
book drops widget outputs anyway (_config.yml), so the build turns it off; the chapter runner does
the same for papermill (depthlib.chapters).
"""
import functools

import nbclient.client


def _without_output_widget(init):
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.widget_registry = {}  # no widget model is mimicked, so nothing is sent on the shell channel

    wrapper.depthbook_patched = True
    return wrapper


def setup(app):
    client = nbclient.client.NotebookClient
    if not getattr(client.__init__, "depthbook_patched", False):
        client.__init__ = _without_output_widget(client.__init__)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
