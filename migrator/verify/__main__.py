from migrator.verify.command import verify

if __name__ == "__main__":
    verify(prog_name="pt-migrate verify")
