"""The book: figures, notebook helpers, the claims page, the power table and the book build and checks."""
