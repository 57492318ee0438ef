"""The policy digest: a shorter policy for the student's prompt, drafted by the teacher and reviewed."""
