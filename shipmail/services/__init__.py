"""The decisions: what each operation does to the database and the mail server.

Services raise :mod:`shipmail.errors` exceptions and return database models; the API modules
render them.
"""
