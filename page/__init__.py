"""The page: Caption Zoo's Gradio app, one module per view.

    context.py    AppContext: what every browser session shares (rating store, model cache, folders)
    session.py    one browser session and who is asking; opening a set; the page's error helpers
    compare.py    Compare & rate: images and models in, captions out, the rating grid, undo/clear/skip
    pairwise.py   Pairwise: two captions of one image, names hidden, keyboard votes, the ranking
    results.py    Results: accuracy with coverage, what is left to rate, raters, progress, gold, exports
    review.py     Review: where raters disagree (largest first), final scores by the set's owner or an admin
    zoo.py        Zoo: one line per entry with the score it is ranked by and where it was measured
    importing.py  Import captions: a CSV/XLSX made elsewhere into a set
    blocks.py     build_app: the views put together, cross-view events, the Gradio API endpoints
    server.py     launch options, the REST app with the page mounted on it, port check, auth
    static/       page.css and keys.js, loaded by server.py

`app.py` is the entry point (arguments, build, launch). Handlers are thin layers over `rating/` and
`captioning/`; the page adds only wording, warnings and errors. Nothing under `captioning/`, `rating/` or
`server/` imports this package.
"""
