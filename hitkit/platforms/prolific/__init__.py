"""Prolific through its REST API: studies, submissions, approvals, bonuses."""
