"""Mechanical Turk through boto3: HITs, HTMLQuestion/ExternalQuestion, answers, imports."""
