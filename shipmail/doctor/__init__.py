"""``shipmail doctor``: every difference between the database and the mail server, and its repair.

:mod:`shipmail.doctor.service` finds and repairs the differences; :mod:`shipmail.doctor.orphans`
saves the mail of an account no mailbox owns before ``--repair --purge-orphans`` removes it.
"""
