"""Reporting: the cross-method boards, the HTML report, figure boilerplate."""
