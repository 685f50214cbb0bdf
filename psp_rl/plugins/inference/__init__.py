"""Task inference under hidden task ids: detect a switch (:mod:`.detection`), try stored contexts
(:mod:`.context_trials`), and the callback that runs both in the loop (:mod:`.task_inference`)."""
