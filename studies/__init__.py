"""Study definitions: one module per search space, each declaring `SPACE = search.Space(...)`.

By default each study's database (`<study>.db`) and outputs (`<study>/`) live in this folder too.
"""
