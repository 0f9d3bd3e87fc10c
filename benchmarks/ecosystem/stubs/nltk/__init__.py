"""A stand-in `nltk` for the pt-migrate ecosystem check: no downloads; whitespace tokens, every tag "NN"."""


def download(*args, **kwargs):
    return True


def word_tokenize(text, *args, **kwargs):
    return text.split()


def pos_tag(tokens, *args, **kwargs):
    return [(t, "NN") for t in tokens]
