"""The cron schedule: installing crontab.txt, time zones, and what the cron user can do."""
