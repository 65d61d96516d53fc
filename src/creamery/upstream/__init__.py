"""The caching mirror's parts: what upstream indexes list (`listing`), how they are asked
(`client`), what we remember of them (`projects`, `cache`), shared verified downloads
(`transfer`) and our rendering of their pages (`render`). `creamery.mirror` puts them together.
"""
